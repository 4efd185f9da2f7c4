# One image for every fleet process: `townlet shard`, `townlet audit`, `townlet send`, ...
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY workers ./workers
COPY ops ./ops
COPY configs ./configs
COPY scripts ./scripts
RUN pip install --no-cache-dir .
ENTRYPOINT ["townlet"]
