# One image for every fleet process: `townlet shard`, `townlet audit`, `townlet send`, ...
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY workers ./workers
COPY ops ./ops
COPY configs ./configs
COPY scripts ./scripts
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 townlet \
    && mkdir -p /state /logs/console \
    && chown -R townlet:townlet /state /logs
# Not root: a bug in a worker cannot touch the image or the host's bind mounts as root. The
# named volumes mounted at /state and /logs start as copies of these (townlet-owned) dirs.
USER townlet
ENTRYPOINT ["townlet"]
