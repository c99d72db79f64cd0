#!/usr/bin/env bash
# The official Node BullMQ (npm, locked in bench/node/package-lock.json) for the tests that
# check worker naming against Node workers, and for the bench's Node peer. Needs npm.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v npm >/dev/null; then
  echo "npm missing: Node BullMQ tests will report it (apt-get install -y npm)" >&2
  exit 0
fi
bash bench/node/setup.sh
