#!/usr/bin/env bash
# Two side environments with the official `bullmq` PyPI package, one per Redis layout the
# bullmq check kind reads. tests/redis/bullmq_driver.py runs inside them (subprocess).
#   .cache/bullmq-v5: bullmq 2.26.x (Python port of BullMQ 5.x)
#   .cache/bullmq-v6: bullmq 3.x    (Python port of BullMQ 6.x, meta.paused layout)
# Idempotent: an environment with the right version is left alone.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}

setup() {
  local dir=$1 spec=$2 want=$3
  if [ -x "$dir/bin/python" ] &&
     "$dir/bin/python" -c "import importlib.metadata as m, sys; sys.exit(not m.version('bullmq').startswith('$want'))" 2>/dev/null; then
    return 0
  fi
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check "$spec"
}

mkdir -p .cache
setup .cache/bullmq-v5 'bullmq==2.26.*' '2.26.'
setup .cache/bullmq-v6 'bullmq>=3,<4' '3.'
