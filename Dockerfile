# syntax=docker/dockerfile:1
# glacierflow's one image: every part runs from it (`glacierflow serve --only stac|timeseries|
# tiles`, `glacierflow catalog init`, `glacierflow run|watch`, `dask scheduler|worker`).
# No secret is baked in: the database password and the transactions key are read at run time
# from files the orchestrator mounts (PGPASSWORD_FILE, GLACIERFLOW_STAC_TRANSACTIONS_API_KEY_FILE).
#   docker build -t glacierflow:local .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

# -- the web front ends (dashboard at /, STAC Browser at /browser/): npm builds ---------------
FROM ${NODE_IMAGE} AS front-ends
WORKDIR /src/services/dashboard
COPY services/dashboard/package.json services/dashboard/package-lock.json ./
COPY services/dashboard/stac-browser/package.json services/dashboard/stac-browser/package-lock.json stac-browser/
RUN npm ci --no-audit --no-fund --loglevel=error \
    && npm --prefix stac-browser ci --no-audit --no-fund --loglevel=error
COPY services/dashboard/build.mjs ./
COPY services/dashboard/src src
COPY services/dashboard/stac-browser/build.mjs services/dashboard/stac-browser/basemaps.config.js stac-browser/
RUN npm run --silent build && npm --prefix stac-browser run --silent build

# -- the Python package and its pinned dependencies in a virtual environment -----------------
# (GDAL comes inside the rasterio wheel, FFTW inside pyfftw's: no compiler, no -dev packages)
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/glacierflow
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY glacierflow glacierflow
COPY processing processing
COPY catalog catalog
COPY services services
COPY --from=front-ends /src/services/dashboard/dist services/dashboard/dist
COPY --from=front-ends /src/services/dashboard/stac-browser/dist services/dashboard/stac-browser/dist
RUN /opt/glacierflow/bin/pip install -c constraints.txt . \
    && /opt/glacierflow/bin/glacierflow --help >/dev/null

# -- what runs: the environment alone, as an unprivileged user ----------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 glacierflow \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/glacierflow glacierflow \
    && mkdir /data && chown 10001:10001 /data
COPY --from=builder /opt/glacierflow /opt/glacierflow
ENV PATH=/opt/glacierflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GLACIERFLOW_DATA_DIR=/data
USER 10001:10001
WORKDIR /home/glacierflow
EXPOSE 8000
# liveness: the process answers; the database's state is /healthz's (readiness), and a part
# whose database is away recovers without a restart, so the image's own check leaves it out
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=4)"]
CMD ["glacierflow", "serve", "--host", "0.0.0.0", "--port", "8000"]
