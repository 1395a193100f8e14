# Thaw training worker (GPU). Build from the repo root: docker build -f docker/worker.Dockerfile .
# PyPI's torch wheel bundles its own CUDA runtime and cuDNN, so the "base" CUDA image is enough; its
# CUDA major must match the wheel's (torch 2.13 on PyPI is a CUDA 13 build, which needs an NVIDIA
# driver >= 580). For an older driver pick a CUDA 12 build that PyTorch still publishes, e.g.
#   --build-arg CUDA_IMAGE=nvidia/cuda:12.6.3-base-ubuntu22.04 \
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-base-ubuntu22.04
FROM ${CUDA_IMAGE}
ARG TORCH_INDEX_URL=https://pypi.org/simple

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    THAW_VAR_DIR=/data/var \
    THAW_ARTIFACTS_DIR=/data/artifacts

# Ubuntu 22.04 ships Python 3.10; deadsnakes provides a current 3.11. A venv keeps pip off the system Python.
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3.11 python3.11-venv \
 && apt-get purge -y --auto-remove software-properties-common gpg-agent \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/venv \
 && pip install --no-cache-dir --upgrade pip

# CUDA torch in its own (large) layer, cached across code changes.
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch>=2.4,<2.14"

WORKDIR /srv/thaw
COPY pyproject.toml README.md alembic.ini ./
COPY migrations/ migrations/
COPY worker/ worker/
COPY app/ app/
# Editable: same layout as the API image (ROOT = /srv/thaw).
RUN pip install --no-cache-dir -e .

# UID 10001 as in the API image, so both can write the shared /data volume.
RUN useradd --uid 10001 --create-home thaw && mkdir -p /data/var /data/artifacts && chown -R thaw:thaw /data
USER thaw
VOLUME /data

# The GPU image serves the `gpu` route by default (THAW_WORKER_QUEUES); add --gpus 0,1 for a training
# process per GPU, or name a GPU class: `thaw worker --queues a100 --gpus 0`. Migrations run elsewhere
# (compose's `migrate` service, deploy/k8s/migrate-job.yaml).
ENV THAW_WORKER_QUEUES='["gpu"]'
CMD ["thaw", "worker"]
