"""runbook-exporter: one Prometheus exporter for the checks operations runbooks write down."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("runbook-exporter")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
