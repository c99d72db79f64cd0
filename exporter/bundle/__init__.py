"""The bundle: profiles/*.yml -> Prometheus rules, Alertmanager routing, Grafana
dashboards and runbook pages, each threshold written once."""
