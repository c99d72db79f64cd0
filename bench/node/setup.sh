#!/usr/bin/env bash
# Installs the bench-only Node peer (official npm `bullmq` + ioredis) into .cache/node-bullmq
# from bench/node/package-lock.json (versions and integrity hashes locked; `npm ci`).
# Idempotent: a directory installed from the current lock is left alone.
# Refresh the lock: cd bench/node && npm install --package-lock-only --ignore-scripts
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=.cache/node-bullmq
command -v npm >/dev/null || { echo "npm is missing (Debian: apt-get install npm)" >&2; exit 1; }
stamp=$(cat bench/node/package.json bench/node/package-lock.json bench/node/peer.mjs | sha256sum | cut -d' ' -f1)
if [ -d "$dir/node_modules/bullmq" ] && [ "$(cat "$dir/.lock-sha256" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
rm -rf "$dir"
mkdir -p "$dir"
cp bench/node/package.json bench/node/package-lock.json bench/node/peer.mjs "$dir/"
# --ignore-scripts: msgpackr's optional native build is not needed (it falls back to JS).
(cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
echo "$stamp" > "$dir/.lock-sha256"
