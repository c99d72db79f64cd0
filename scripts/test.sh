#!/usr/bin/env bash
# Installs everything the test suite needs on a Debian machine, then runs the whole suite.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian binaries the tests start as real servers (the list is in one place: here).
APT_PACKAGES=(redis-server postgresql pgbouncer prometheus prometheus-alertmanager docker-compose prometheus-redis-exporter prometheus-blackbox-exporter prometheus-postgres-exporter wrk)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# kubectl (for `kubectl kustomize` on deploy/kubernetes): any kubectl will do, and some
# images ship their own at /usr/bin/kubectl, which Debian's package would collide with.
command -v kubectl >/dev/null || missing+=(kubernetes-client)
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
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

# Extra environments the tests use (e.g. two BullMQ majors side by side).
for setup in scripts/test-setup.d/*.sh; do
  [ -e "$setup" ] && bash "$setup"
done

exec .venv/bin/python -m pytest "$@"
