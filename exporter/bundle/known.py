"""Standard metric names of the other exporters the profiles rely on, per source.

Only names the rules and dashboards use; each is that exporter's documented name. A
profile's ``bundle.exporters`` entry names its ``source`` here, and the tests check every
query against this list or the check kinds' declared families.
"""

EXTERNAL_METRICS: dict[str, set[str]] = {
    # Prometheus itself: the scrape health of every target.
    "prometheus": {"up"},
    "node_exporter": {
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_memory_MemTotal_bytes",
        "node_filesystem_avail_bytes",
        "node_filesystem_size_bytes",
    },
    "cAdvisor": {
        "container_cpu_usage_seconds_total",
        "container_memory_usage_bytes",
        "container_memory_working_set_bytes",
        "container_spec_cpu_period",
        "container_spec_cpu_quota",
        "container_spec_memory_limit_bytes",
        "container_start_time_seconds",
        "machine_cpu_cores",
        "machine_memory_bytes",
    },
    # The application's own /metrics (prom-client, prometheus_client, Go client).
    "app": {
        "http_requests_total",
        "http_request_duration_seconds_bucket",
    },
    "playback-service": {"playback_cache_hits_total", "playback_cache_misses_total"},
    "MinIO": {
        "minio_cluster_capacity_usable_free_bytes",
        "minio_cluster_capacity_usable_total_bytes",
    },
}
