# syntax=docker/dockerfile:1
#
# MiDaS small depth service.
#   docker build -t midas-depth .                              # official weights (downloads)
#   docker build -t midas-depth --build-arg MIDAS_WEIGHTS=random .   # offline smoke image
#
# Stages: base (serving deps, CPU-only torch) -> export (adds export deps and the newer torch
#         they need, writes /models); base -> runtime (serving code + /models only; no
#         timm/torchvision/onnx, torch's CPU build).

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt ./
# torch first, from the CPU wheel index (the PyPI wheel drags in ~3 GB of CUDA libraries); the
# pin comes from requirements.txt, so the second install finds torch already satisfied.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch -c requirements.txt \
 && pip install -r requirements.txt

# ---------------------------------------------------------------------------------------------
FROM base AS export

# official: download the released checkpoint from GitHub (needs network at build time);
# random: untrained weights of the official layout, meaningless depth, for offline smoke builds.
ARG MIDAS_WEIGHTS=official
COPY requirements-export.txt ./
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -r requirements-export.txt
COPY midas_service/ midas_service/
RUN case "$MIDAS_WEIGHTS" in \
      official) source_flag="" ;; \
      random) source_flag="--random-weights" ;; \
      *) echo "MIDAS_WEIGHTS must be 'official' or 'random', got '$MIDAS_WEIGHTS'" >&2; exit 2 ;; \
    esac \
 && MIDAS_CACHE_DIR=/tmp/midas-cache \
    python -m midas_service export --output /models/midas_small.pt $source_flag \
 && test -s /models/midas_small.pt && test -s /models/midas_small.onnx \
 && rm -rf /tmp/midas-cache

# ---------------------------------------------------------------------------------------------
FROM base AS runtime

ARG MIDAS_WEIGHTS=official
LABEL org.opencontainers.image.title="midas-depth" \
      org.opencontainers.image.description="MiDaS v2.1 small monocular depth web service" \
      io.midas-service.weights="${MIDAS_WEIGHTS}"

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin app

# Code and model are owned by root and read-only for the service user.
COPY --from=export /models/ /models/
COPY app.py gunicorn.conf.py ./
COPY midas_service/ midas_service/
COPY templates/ templates/
COPY static/ static/

# TorchScript workers use Intel OpenMP (the intel-openmp wheel puts libiomp5.so in pip's prefix,
# /usr/local here), preloaded so torch's OpenMP calls resolve to it; KMP_BLOCKTIME=1 ms lets idle
# threads sleep almost at once, so concurrent requests in two workers do not starve each other.
ENV MIDAS_MODEL_PATH=/models/midas_small.pt \
    MIDAS_BACKEND=torchscript \
    LD_PRELOAD=/usr/local/lib/libiomp5.so \
    KMP_BLOCKTIME=1 \
    GUNICORN_BIND=0.0.0.0:8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus

# The job store (MIDAS_JOBS_DIR): a volume shared by the web and the worker containers mounts
# here and takes this ownership when it is new.
RUN mkdir -p /var/lib/midas-jobs && chown 10001:10001 /var/lib/midas-jobs
ENV MIDAS_JOBS_DIR=/var/lib/midas-jobs

USER 10001:10001
EXPOSE 8000

# Liveness only (cheap); readiness is /readyz, which orchestrators probe themselves.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]

CMD ["gunicorn", "-c", "gunicorn.conf.py", "app:app"]
