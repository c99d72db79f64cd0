"""Benchmarks of runbook-exporter against the exporters it replaces (python -m bench)."""
