# One image for every tinytrain process; the torch build and the extras are chosen at build time:
#   CPU (api, migrate, worker-cpu): TORCH_INDEX=https://download.pytorch.org/whl/cpu  EXTRAS=server (default)
#   GPU (worker):                   TORCH_INDEX=https://download.pytorch.org/whl/cu128 EXTRAS=gpu
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ARG EXTRAS=server
RUN useradd --create-home --uid 10001 tinytrain
WORKDIR /app
RUN pip install --no-cache-dir --no-deps --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
COPY model model
COPY jobs jobs
COPY worker worker
COPY api api
COPY tinytrain tinytrain
RUN pip install --no-cache-dir ".[${EXTRAS}]"
# The default SQLite file would land in /app, which the user cannot write: a plain `docker run`
# keeps its database (and SQLite's -wal and -shm files beside it) in /data instead; mount a named
# volume there (-v tinytrain-data:/data) to keep it across containers. Compose sets
# TINYTRAIN_DATABASE_URL to PostgreSQL for every tinytrain service, which overrides this.
RUN mkdir /data && chown tinytrain:tinytrain /data
VOLUME /data
ENV TINYTRAIN_DATABASE_URL=sqlite:////data/tinytrain.db
USER tinytrain
# numba's compile cache: site-packages is read-only for this user.
ENV NUMBA_CACHE_DIR=/tmp/numba-cache PYTHONUNBUFFERED=1
EXPOSE 8000
# A container's stdout is kept (docker logs), so serve prints no first key: make keys with
# `docker exec CONTAINER tinytrain keys create --owner NAME`, which prints it to that terminal only.
CMD ["tinytrain", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-first-key"]
