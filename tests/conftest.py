"""Fixtures every test area may use: real Redis servers (see tests/servers.py), tmpfs
mounts and captured logs (tests/support.py)."""

from tests.servers import redis_factory, redis_server
from tests.support import log_stream, tmpfs, tmpfs_mounts

__all__ = ["log_stream", "redis_factory", "redis_server", "tmpfs", "tmpfs_mounts"]
