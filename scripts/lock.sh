#!/usr/bin/env bash
# Refreshes every lock in requirements/ from pyproject.toml and requirements/*.in, then runs
# the whole suite against the new locks in a new virtualenv (as .ci/run does).
# Usage: scripts/lock.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# The locking tool itself is pinned: a newer uv may resolve or format differently.
UV_VERSION=0.13.9
tool=.cache/locktool
if ! [ -x "$tool/bin/uv" ] || [ "$("$tool/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  rm -rf "$tool"
  "$PYTHON" -m venv "$tool"
  "$tool/bin/pip" install -q --disable-pip-version-check "uv==$UV_VERSION"
fi

compile() {  # compile OUTPUT INPUT... [uv flags]
  local out=$1; shift
  "$tool/bin/uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
    --custom-compile-command scripts/lock.sh -o "requirements/$out" "$@"
}
compile test.lock pyproject.toml requirements/build.in --extra test --extra bench
compile image.lock pyproject.toml requirements/build.in --extra pgbouncer
compile bullmq-v5.lock requirements/bullmq-v5.in
compile bullmq-v6.lock requirements/bullmq-v6.in

exec env FRESH_VENV=1 scripts/test.sh "$@"
