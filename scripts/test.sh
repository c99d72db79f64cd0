#!/usr/bin/env bash
# Installs everything the test suite needs on a Debian machine, then runs the whole suite.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian binaries the tests start as real servers (the list is in one place: here).
APT_PACKAGES=(redis-server redis-sentinel postgresql pgbouncer prometheus prometheus-alertmanager docker-compose prometheus-redis-exporter prometheus-blackbox-exporter prometheus-postgres-exporter wrk chromium)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# kubectl (for `kubectl kustomize` on deploy/kubernetes): any kubectl will do, and some
# images ship their own at /usr/bin/kubectl, which Debian's package would collide with.
command -v kubectl >/dev/null || missing+=(kubernetes-client)
# npm (and node) for the official Node BullMQ (scripts/test-setup.d/node-bullmq.sh); any
# node >= 18 will do, so an existing one is kept.
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing Debian packages: ${missing[*]} (sudo apt-get install -y ${missing[*]})" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
# FRESH_VENV=1 (set by .ci/run and scripts/lock.sh) builds the environments anew, so a venv or
# wheel cache this machine kept cannot hide a missing pin or install step.
if [ "${FRESH_VENV:-0}" = 1 ]; then
  rm -rf .venv .cache/bullmq-v5 .cache/bullmq-v6
  export PIP_NO_CACHE_DIR=1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# Exactly the locked versions, verified by hash (requirements/README.md); then the project
# itself without resolving anything (its build backend, setuptools, is in the lock too).
.venv/bin/pip install -q --disable-pip-version-check --require-hashes --no-deps -r requirements/test.lock
.venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .

# Extra environments the tests use (e.g. two BullMQ majors side by side).
for setup in scripts/test-setup.d/*.sh; do
  [ -e "$setup" ] && bash "$setup"
done

exec .venv/bin/python -m pytest "$@"
