"""Families shared by several check kinds: the metric contract rules and dashboards rely on."""

from exporter.samples import Family

CHECK_SUCCESS = Family(
    "runbook_exporter_check_success",
    "gauge",
    "1 when the check's last run succeeded, 0 when it failed or timed out.",
    ("kind",),
)
CHECK_DURATION = Family(
    "runbook_exporter_check_duration_seconds",
    "gauge",
    "Wall time of the check's last run.",
    ("kind",),
)
FRESHNESS = Family(
    "freshness_timestamp_seconds",
    "gauge",
    "Unix time of the newest data seen by the check; age is time() minus this.",
    ("item",),
    past_time=True,
)
DB_POOL_CONNECTIONS = Family(
    "db_pool_connections",
    "gauge",
    "Connections of a database or pooler by state.",
    ("state",),
)
DB_POOL_MAX_CONNECTIONS = Family(
    "db_pool_max_connections",
    "gauge",
    "Connections the database or pool accepts at most (reserved slots excluded).",
)

# The exporter's own families (besides process_*, exporter/process.py): read by the server
# and by docs/metrics.md, so their names and help are written once.
BUILD_INFO = Family(
    "runbook_exporter_build_info", "gauge", "Version of the exporter; always 1.", ("version",)
)
CONFIG_RELOAD_SUCCESSFUL = Family(
    "runbook_exporter_config_last_reload_successful",
    "gauge",
    "1 when the last configuration (re)load succeeded.",
)
CONFIG_RELOAD_SUCCESS_TIME = Family(
    "runbook_exporter_config_last_reload_success_timestamp_seconds",
    "gauge",
    "Unix time of the last successful configuration (re)load.",
)
OWN_FAMILIES = (BUILD_INFO, CONFIG_RELOAD_SUCCESSFUL, CONFIG_RELOAD_SUCCESS_TIME)
