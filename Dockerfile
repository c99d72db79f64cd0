# runbook-exporter: one process, one YAML file.
#   docker build -t runbook-exporter:0.1.0 .     # the one image name and tag (= the version)
#   docker run -p 9711:9711 -v $PWD/profiles:/etc/runbook-exporter/profiles:ro \
#     runbook-exporter:0.1.0 --config.file=/etc/runbook-exporter/profiles/smart-city.yml
# Compose builds and uses the same name; Kubernetes pulls it from your registry
# (deploy/kubernetes/README.md: build, tag, push, kustomize edit set image).
# Without --config.file the embedded default config runs (the exporter watches itself).

# Build stage: wheels for the package and its dependencies, so the runtime image carries
# no pip cache, no build tree and no compiler.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/image.lock ./requirements/
COPY exporter ./exporter
# Exactly the locked versions, verified by hash (requirements/README.md), then the package
# itself without resolving anything.
RUN python -m venv /opt/runbook-exporter \
 && /opt/runbook-exporter/bin/pip install --require-hashes --no-deps -r requirements/image.lock \
 && /opt/runbook-exporter/bin/pip install --no-deps --no-build-isolation '.' \
 && /opt/runbook-exporter/bin/pip uninstall -y setuptools

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/runbook-exporter/bin:$PATH
# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
RUN groupadd --system --gid 10001 runbook \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin runbook
COPY --from=build /opt/runbook-exporter /opt/runbook-exporter
# The runbook profiles ship in the image; each one is a complete exporter config.
COPY profiles /etc/runbook-exporter/profiles
USER 10001:10001
EXPOSE 9711
# /-/healthy answers while the process serves; it does not run checks (a dead target must
# not make the orchestrator restart the exporter that reports it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9711/-/healthy', timeout=4)"]
ENTRYPOINT ["runbook-exporter"]
CMD []
