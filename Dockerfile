# The ferryman operator image. The same image runs the storage initializer, the init
# container of every model pod (`python -m ferryman.storage_init`, see docs/release.md).
#
# Two stages: `build` turns the source tree into a wheel; the final stage installs only
# that wheel (and its pinned runtime dependencies) into a slim Python base. The base is
# pinned by tag here; the release workflow records the digest it resolved, and Renovate
# (renovate.json) pins and bumps the digest. Build: docker buildx build -t ferryman:dev .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The build stage is never shipped, so it carries no OCI labels. The wheel is pure Python:
# it is built once, on the builder's own platform, for every target platform.
# hadolint ignore=DL3049
FROM --platform=$BUILDPLATFORM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# `build` is pinned to the same version as in pyproject.toml's dev extra (a test checks).
RUN pip install --no-cache-dir build==1.6.1
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m build --wheel --outdir /dist

FROM ${PYTHON_IMAGE}
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ferryman" \
      org.opencontainers.image.description="Kubernetes operator that rolls ML model versions into production (canary, blue-green, shadow) with Prometheus analysis and automatic rollback; also its storage initializer." \
      org.opencontainers.image.source="https://github.com/ferryman-dev/ferryman" \
      org.opencontainers.image.documentation="https://github.com/ferryman-dev/ferryman/blob/main/docs/release.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="ferryman" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# Read-only root filesystem: nothing is written at run time. Bytecode is compiled at
# install time and never written afterwards; HOME points at /tmp in case a library wants
# a home directory (mount an emptyDir there when the root filesystem is read-only).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    HOME=/tmp
# The wheel is mounted from the build stage, never copied into a layer. pip compiles
# the installed modules to bytecode, so a read-only root costs no start-up time. The
# `storage` extra brings the storage initializer's s3, gs and oci clients
# (docs/artifacts.md); the operator never imports them. Its versions are pinned in
# pyproject.toml, which hadolint cannot see through the wheel's file name:
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/dist,target=/dist \
    wheel=$(echo /dist/ferryman-*.whl) \
    && pip install --no-cache-dir "${wheel}[storage]" \
    && groupadd --gid 65532 ferryman \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin ferryman
WORKDIR /tmp
# Numeric, so the kubelet can verify runAsNonRoot without reading /etc/passwd.
USER 65532:65532
# Metrics (Prometheus) and kopf's liveness endpoint.
EXPOSE 8000 8081
ENTRYPOINT ["python", "-m", "ferryman"]
