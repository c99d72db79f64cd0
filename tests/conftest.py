"""Fixtures every test area may use: real Redis servers (see tests/servers.py)."""

from tests.servers import redis_factory, redis_server

__all__ = ["redis_factory", "redis_server"]
