# Developer shortcuts. Each target runs one documented command; see docs/.
PYTHON ?= .venv/bin/python

.PHONY: bench
# Benchmarks against redis_exporter, blackbox_exporter and postgres_exporter (Debian
# packages) on this machine; writes bench/results/latest.md. See docs/benchmarks.md.
bench:
	$(PYTHON) -m bench $(BENCH_ARGS)
