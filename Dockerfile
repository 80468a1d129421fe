# syntax=docker/dockerfile:1
#
# One image for every Helios process: the four services (python -m services.<name>)
# and the task helpers that run inside task Jobs (python -m helios.downloader,
# python -m helios.uploader).
#
#   docker build -t ghcr.io/helios-project/helios:0.1.0 .
#
# Both stages use the same base image so the venv's interpreter symlinks
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
# .dockerignore admits only pyproject.toml, README.md, LICENSE and the two packages.
COPY . .
COPY --from=web /services/api/static services/api/static
# A non-editable install: the venv ends up holding the project and its dependencies,
# byte-compiled, and nothing refers back to /src.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install . \
 && pip check

FROM ${PYTHON_IMAGE}
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
