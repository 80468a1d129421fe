# syntax=docker/dockerfile:1
#
# One image for every Helios process (tests/deploy/test_image.py derives this list from
# the manifests and the Job builder, and runs each from the package as installed below):
#   - the four services: python -m services.{api,metrics,scheduler,watcher}, with
#     `sleep` as the api's and metrics' preStop hook;
#   - the helpers of task Jobs: `chown` (init container cache-owner, uid 0 with
#     CAP_CHOWN only), python -m helios.downloader (init container), and
#     python -m helios.executors.kubernetes.waiter (the upload step; it runs the
#     uploader, also python -m helios.uploader);
#   - the dev overlay's Job helios-dev-secrets: python and the standard library.
# No init process: each Python service handles SIGTERM as PID 1 and reaps its own children.
#
#   DOCKER_BUILDKIT=1 docker build -t ghcr.io/helios-project/helios:0.1.0 .
#
# The builder and the final stage use the same base image so the venv's interpreter symlinks
# (/opt/venv/bin/python -> /usr/local/bin/python3.11) stay valid in the final stage.
# python:3.11-slim, pinned to its Debian release so a rebuild never switches distribution
# silently; pin a digest (python:3.11-slim-bookworm@sha256:...) for reproducible builds.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The web page: built from web/ with its lockfile, then copied into the package it is
# served from (services/api/static/, package data), so the image needs no CDN at run time.
FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm install -g npm@11 && npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# What `pip install .` needs, and nothing of web/ (its sources change often; the page
# comes built from the web stage).
COPY pyproject.toml README.md ./
COPY helios/ helios/
COPY services/ services/
COPY --from=web /services/api/static services/api/static
# A non-editable install: the venv ends up holding the project and its dependencies,
# byte-compiled, and nothing refers back to /src.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install . \
 && pip check

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="helios" \
      org.opencontainers.image.description="Helios services and task helpers" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid/gid (10001) so Kubernetes can verify runAsNonRoot from the image
# alone, and so the node-cache arrangement in deploy/README.md can rely on it.
RUN groupadd --system --gid 10001 helios \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin helios
COPY --from=builder /opt/venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
# The root filesystem is read-only in the cluster; /tmp is an emptyDir there.
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080 8081 8082 8083
CMD ["python", "-m", "services.api"]
