#!/usr/bin/env bash
# Two side environments with the official `bullmq` PyPI package, one per Redis layout the
# bullmq check kind reads. tests/redis/bullmq_driver.py runs inside them (subprocess).
#   .cache/bullmq-v5: bullmq 2.26.x (Python port of BullMQ 5.x)  requirements/bullmq-v5.lock
#   .cache/bullmq-v6: bullmq 3.x    (Python port of BullMQ 6.x, meta.paused layout)  bullmq-v6.lock
# Idempotent: an environment built from the current lock is left alone.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}

setup() {
  local dir=$1 lock=$2 stamp
  stamp=$(sha256sum "$lock" | cut -d' ' -f1)
  if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.lock-sha256" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check --require-hashes --no-deps -r "$lock"
  echo "$stamp" > "$dir/.lock-sha256"
}

mkdir -p .cache
setup .cache/bullmq-v5 requirements/bullmq-v5.lock
setup .cache/bullmq-v6 requirements/bullmq-v6.lock
