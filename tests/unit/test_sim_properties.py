"""Property tests: invariants that must hold for any town and any seed."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.sim.world import World
from tests.simtools import tiny_config

agent_st = st.fixed_dictionaries({
    "needs": st.fixed_dictionaries(
        {n: st.floats(0.05, 1.0) for n in ("hunger", "hygiene", "energy")}),
    "wallet": st.floats(0.0, 3.0),
    "position": st.tuples(st.integers(0, 11), st.integers(0, 11)),
})


@settings(max_examples=25, deadline=None)
@given(agents=st.lists(agent_st, min_size=1, max_size=6), seed=st.integers(0, 2**31),
       penalty=st.floats(0.0, 5.0), chat=st.floats(0.0, 1.0))
def test_needs_stay_in_unit_range_and_penalties_never_make_wallets_negative(
        agents: list[dict[str, object]], seed: int, penalty: float, chat: float) -> None:
    specs = [{"id": f"x{i}", **a} for i, a in enumerate(agents)]
    cfg = tiny_config(
        agents=specs, world={"seed": seed, "ticks_per_day": 120, "grid_size": 12},
        jobs={"grocer": {"start_tick": 20, "end_tick": 80, "wage_rate": 0.01,
                         "lateness_penalty": penalty, "location": [11, 11]}},
        employment={"absence_penalty": penalty, "late_tick_penalty": penalty / 10,
                    "enforce_job_loop": True, "daily_exit_cap": 0},
        behavior={"chat_probability": chat})
    world = World(cfg)
    for tick in range(1, 300):
        world.step(tick)
        live = world.agents.live_slots()
        needs = world.agents.needs[live]
        assert np.all((needs >= 0.0) & (needs <= 1.0))
        assert np.all(world.agents.wallet[live] >= 0.0)
        assert np.all(np.abs(world.agents.tie_trust[live]) <= 1.0)
