# Thaw API image (CPU only). Build from the repo root: docker build -f docker/api.Dockerfile .
FROM python:3.11-slim

# Base models are local directories (minilm-l6 ships inside a pip package): never call the Hub.
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    THAW_HOST=0.0.0.0 \
    THAW_PORT=8000 \
    THAW_VAR_DIR=/data/var \
    THAW_ARTIFACTS_DIR=/data/artifacts

# CPU wheel first, in its own layer: the project's plain `torch` requirement would otherwise pull a
# multi-GB CUDA build, and this layer stays cached while the code changes.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch>=2.4,<2.14"

WORKDIR /srv/thaw
COPY pyproject.toml README.md alembic.ini ./
COPY migrations/ migrations/
COPY worker/ worker/
COPY app/ app/
# Editable, so the package stays in /srv/thaw and `thaw migrate` finds alembic.ini beside it.
RUN pip install --no-cache-dir -e .

# Same fixed UID as the worker image: both write the shared /data volume. A named volume mounted on
# /data starts out with this directory's owner.
RUN useradd --uid 10001 --create-home thaw && mkdir -p /data/var /data/artifacts && chown -R thaw:thaw /data
USER thaw
VOLUME /data

EXPOSE 8000
# No curl in slim; urlopen raises (exit 1) on a refused connection or a non-2xx (503: database down).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('THAW_PORT', '8000'), timeout=4)"

# Migrate on start (idempotent), then exec the API so it receives SIGTERM directly.
CMD ["sh", "-c", "thaw migrate && exec thaw serve"]
