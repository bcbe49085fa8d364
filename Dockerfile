# syntax=docker/dockerfile:1
# One image for every component: the command is `prgate <component>` (migrate, backend, bot, worker),
# as charts/prgate and docker-compose.yml run it; with no arguments it runs `prgate up`, the whole stack
# with embedded PostgreSQL/Redis under PRGATE_DATA_DIR (a demo, not a deployment).

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml requirements.lock README.md LICENSE ./
COPY shared_contracts/ shared_contracts/
COPY provider_clients/ provider_clients/
COPY backend_api/ backend_api/
COPY bot_worker/ bot_worker/
COPY prgate/ prgate/
# Runtime dependencies only (no [dev] extra), pinned by the lock file. The migrations are package data
# of backend_api (backend_api/migrations/), so the install carries them.
RUN pip install -c requirements.lock . \
 && python -m compileall -q /opt/venv/lib

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PRGATE_DATA_DIR=/tmp/prgate
RUN groupadd --system --gid 10001 prgate \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin prgate
COPY --from=builder /opt/venv /opt/venv
WORKDIR /tmp
USER 10001:10001
# backend 8080, receiver 8081, worker metrics 9101
EXPOSE 8080 8081 9101
ENTRYPOINT ["prgate"]
CMD ["up"]
