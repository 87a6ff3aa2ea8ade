# syntax=docker/dockerfile:1
# The agent's image (docs/deployment.md): a virtualenv installed from constraints.txt on a slim
# Python base, run as a non-root user on a read-only root filesystem.
#
# The base is pinned by tag. Pin it by digest too (python:3.11-slim-bookworm@sha256:...) in a
# build that can reach the image registry; the digest could not be resolved where this file
# was written.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# Same path in both stages: a virtualenv's scripts name their interpreter by absolute path.
ARG VENV=/opt/dns-staleness-exporter

FROM ${PYTHON_IMAGE} AS build
ARG VENV
# The git revision, for dns_staleness_build_info: docker build --build-arg REVISION=$(git rev-parse HEAD)
ARG REVISION=unknown
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY exporter/ exporter/
# pip compiles the modules here: the running image cannot write __pycache__.
RUN printf '%s\n' "$REVISION" > exporter/REVISION \
    && python -m venv "$VENV" \
    && "$VENV/bin/pip" install -c constraints.txt .

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VENV
# Keep in step with exporter/__init__.py and the chart's appVersion (tests/unit/test_dockerfile.py).
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="dns-staleness-exporter" \
      org.opencontainers.image.description="Measures how long each DNS layer of a Kubernetes node serves records of headless Services after they changed." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
COPY --from=build ${VENV} ${VENV}
ENV PATH="${VENV}/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The chart's runAsUser/runAsGroup; numeric, so runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 9897
ENTRYPOINT ["dns-staleness-exporter"]
CMD ["run"]
