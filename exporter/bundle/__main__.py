"""``python -m exporter.bundle generate|check`` (same as ``runbook-exporter bundle ...``)."""

import sys

from exporter.bundle.cli import main

raise SystemExit(main(["bundle", *sys.argv[1:]]))
