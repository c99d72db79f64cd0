"""runbook-exporter: one Prometheus exporter for the checks operations runbooks write down."""

# The one place the version is written: pyproject.toml reads it from here (setuptools'
# dynamic attr), so the package needs no importlib.metadata lookup at start (~1 MiB, ~20 ms).
__version__ = "0.1.0"
