"""`townlet dry-run`: the checklist of docs/user/console-dry-run.md, each item PASS or FAIL with
the evidence it was judged on; exit 1 if any fails.

In process (no ``--shard``) it runs the seed's own scenario on a fresh town; with ``--shard ID``
the same steps go to a live shard over the broker, as the user's document asks once the CLI
exists ("an automated CLI test harness ... end-to-end against a live simulation shard"). There
the exit-queue steps run while the shard is paused (and resumed after, unless it was paused
already), so that enqueue, review, approve and defer meet the same tick as in the seed script,
and the manual enqueue is the console's ``employment_exit enqueue``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import typer

from ops.connect import client_errors, connect_client
from ops.dry_run_sessions import SEED_CONFIG, InProcessSession, LiveSession
from ops.vocabulary import CliError, Exit
from shared.audit.sink import AuditLogLocked
from shared.config import environment_value

EMPLOYMENT_KEYS = ("pending", "pending_count", "exits_today", "daily_exit_cap", "queue_limit",
                   "review_window")
ITEMS = (
    "telemetry_snapshot payload includes employment metrics and schema_version",
    "employment_exit review shows pending queue entry after manual enqueue",
    "employment_exit approve marks agent for manual exit",
    "employment_exit defer clears queue entry",
    "No schema warning emitted when shard version matches console support",
    "console_results reports command outcomes for the latest tick",
    "logs/console/commands.jsonl appended an entry matching the last command cmd_id",
    "force_chat response shows updated relationship ties for both agents",
)


@dataclass
class Check:
    item: str
    ok: bool
    evidence: str


def _j(value: Any) -> str:
    """Evidence values as JSON (what an operator pastes into a ticket), not Python reprs."""
    return json.dumps(value, sort_keys=True, default=str)


def _res(result: dict[str, Any]) -> dict[str, Any]:
    return result.get("result") or {}


def _outcome(result: dict[str, Any]) -> str:
    if result.get("status") == "ok":
        return "ok"
    error = result.get("error") or {}
    return f"{error.get('code')}: {error.get('message')}"


def _exit_steps(session: Any, agent: str) -> dict[str, dict[str, Any]]:
    steps = {"enqueue": session.enqueue(agent),
             "review": session.command("employment_exit", "review", admin=True),
             "approve": session.command("employment_exit", "approve", agent, admin=True),
             "defer": session.command("employment_exit", "defer", agent, admin=True),
             "status": session.command("employment_status")}
    steps["latest"] = {"results": session.latest_results()}
    return steps


def _paused_exit_steps(session: Any, agent: str, paused: bool) -> dict[str, dict[str, Any]]:
    """The exit steps, on a live shard within one paused tick (see the module docstring)."""
    if not session.live or paused:
        return _exit_steps(session, agent)
    pause = session.command("pause", admin=True)
    if pause.get("status") != "ok":
        raise CliError(f"cannot pause {session.shard_id} for the exit-queue steps: "
                       f"{_outcome(pause)} (is {session.token_env} an admin token?)")
    try:
        return _exit_steps(session, agent)
    finally:
        session.command("resume", admin=True)


def checklist(session: Any, agent: str = "agent_0", listener: str = "agent_1",
              audit_timeout: float = 5.0) -> list[Check]:
    snapshot = session.command("telemetry_snapshot")
    snap = _res(snapshot)
    paused = bool((snap.get("health") or {}).get("paused"))
    steps = _paused_exit_steps(session, agent, paused)
    chat = session.force_chat(agent, listener)
    audit = session.audit_lines(chat.get("cmd_id"), audit_timeout)
    return [_snapshot_check(snapshot), *_queue_checks(steps, agent),
            _schema_check(snapshot, steps["status"]), _latest_check(steps),
            _audit_check(audit, chat, session.audit_path), _chat_check(chat)]


def _snapshot_check(snapshot: dict[str, Any]) -> Check:
    snap = _res(snapshot)
    employment = snap.get("employment") or {}
    missing = [k for k in EMPLOYMENT_KEYS if k not in employment]
    ok = snapshot.get("status") == "ok" and bool(snap.get("schema_version")) and not missing
    shown = " ".join(f"{k}={employment[k]}" for k in EMPLOYMENT_KEYS[1:] if k in employment)
    return Check(ITEMS[0], ok, f"{_outcome(snapshot)}; schema_version="
                 f"{snap.get('schema_version')}; employment: {shown or '-'}"
                 + (f"; missing {missing}" if missing else ""))


def _queue_checks(steps: dict[str, dict[str, Any]], agent: str) -> list[Check]:
    review, approve, defer = (_res(steps[k]) for k in ("review", "approve", "defer"))
    pending = review.get("pending") or []
    review_ok = steps["review"].get("status") == "ok" and agent in pending
    approvals = (approve.get("metrics") or {}).get("manual_approvals") or []
    approve_ok = approve.get("approved") is True and agent in approvals
    status = _res(steps["status"])
    still = [p.get("agent_id") if isinstance(p, dict) else p
             for p in status.get("pending_agents") or []]
    after = (defer.get("metrics") or {}).get("pending") or []
    defer_ok = defer.get("deferred") is True and agent not in after and agent not in still
    return [
        Check(ITEMS[1], review_ok, f"enqueue {_outcome(steps['enqueue'])}; review "
              f"{_outcome(steps['review'])}: pending={_j(pending)} "
              f"pending_count={review.get('pending_count')}"),
        Check(ITEMS[2], approve_ok, f"approve {_outcome(steps['approve'])}: approved="
              f"{_j(approve.get('approved'))} manual_approvals={_j(approvals)}"),
        Check(ITEMS[3], defer_ok, f"defer {_outcome(steps['defer'])}: pending after={after}; "
              f"employment_status pending_agents={still} pending_count="
              f"{(status.get('metrics') or {}).get('pending_count')}"),
    ]


def _schema_check(snapshot: dict[str, Any], status: dict[str, Any]) -> Check:
    warnings = [_res(snapshot).get("schema_warning"), _res(status).get("schema_warning")]
    ok = all(r.get("status") == "ok" for r in (snapshot, status)) and warnings == [None, None]
    return Check(ITEMS[4], ok, f"schema_warning of telemetry_snapshot={_j(warnings[0])}, "
                 f"employment_status={_j(warnings[1])}")


def _latest_check(steps: dict[str, dict[str, Any]]) -> Check:
    latest = {r.get("cmd_id"): r for r in steps["latest"]["results"]}
    wanted = [steps[k] for k in ("review", "approve", "defer", "status")]
    found = [latest.get(r.get("cmd_id")) for r in wanted]
    ticks = {r.get("tick") for r in found if r}
    ok = all(f is not None and f.get("status") == "ok" for f in found) and len(ticks) == 1
    shown = ", ".join(f"{r.get('name')}={f.get('status') if f else 'missing'}"
                      for r, f in zip(wanted, found, strict=True))
    return Check(ITEMS[5], ok, f"{len(latest)} latest result(s) at tick(s) {_j(sorted(ticks))}: "
                 f"{shown}")


def _audit_check(lines: list[dict[str, Any]], chat: dict[str, Any], path: Path) -> Check:
    cmd_id = chat.get("cmd_id")
    if not lines:
        return Check(ITEMS[6], False, f"{path} not found or empty (is `townlet audit` writing "
                     "there? see --audit-log)")
    matching = [line for line in lines if line.get("cmd_id") == cmd_id]
    ok = bool(matching) and matching[-1].get("status") == chat.get("status")
    return Check(ITEMS[6], ok, f"{path}: {len(lines)} line(s); last command {cmd_id} "
                 f"{'found' if matching else 'NOT found'}")


def _chat_check(chat: dict[str, Any]) -> Check:
    result = _res(chat)
    ties = [result.get("speaker_tie"), result.get("listener_tie")]
    ok = chat.get("status") == "ok" and all(
        isinstance(t, dict) and (t.get("familiarity") or 0) > 0 for t in ties)
    return Check(ITEMS[7], ok, f"force_chat {_outcome(chat)}: speaker_tie={_j(ties[0])} "
                 f"listener_tie={_j(ties[1])}")


def report(checks: list[Check], where: str, as_json: bool) -> bool:
    passed = sum(c.ok for c in checks)
    if as_json:
        typer.echo(json.dumps({"target": where, "items": [asdict(c) for c in checks],
                               "passed": passed, "failed": len(checks) - passed,
                               "ok": passed == len(checks)}, sort_keys=True, default=str))
    else:
        typer.echo(f"console dry run against {where}")
        for check in checks:
            typer.echo(f"{'PASS' if check.ok else 'FAIL'}  {check.item}\n      {check.evidence}")
        typer.echo(f"{passed}/{len(checks)} checklist items passed" if passed == len(checks)
                   else f"{len(checks) - passed} of {len(checks)} checklist items FAILED")
    return passed == len(checks)


def run_in_process(*, as_json: bool) -> bool:
    if not SEED_CONFIG.is_file():
        raise CliError(f"{SEED_CONFIG} not found in {Path.cwd()}: run `townlet dry-run` from "
                       "the project root (the directory holding configs/)")
    try:
        session = InProcessSession()
    except AuditLogLocked as exc:  # e.g. a fleet's audit consumer writes it right now
        raise CliError(f"{exc} (by a running `townlet audit`?): stop it, or run the checklist "
                       "against a live shard: townlet dry-run --shard ID") from None
    return report(checklist(session), "a fresh in-process shard", as_json)


def run_live(url: str, shard_id: str, *, audit_log: Path, token_env: str, timeout: float,
             as_json: bool) -> bool:
    token = environment_value(token_env)
    if not token:
        raise CliError(f"${token_env} is not set: the live dry run needs an admin console token "
                       "(employment_exit, pause and force_chat are admin commands)", Exit.USAGE)
    broker = connect_client(url, timeout, "dry-run", shard_id)
    session = LiveSession(broker, shard_id, token, audit_log, timeout, token_env)
    try:
        with client_errors(url):
            try:
                checks = checklist(session, audit_timeout=timeout)
            except ValueError as exc:  # an invalid shard id
                raise CliError(str(exc), Exit.USAGE) from None
    finally:
        session.close()
    return report(checks, f"live shard {shard_id}", as_json)
