"""Fixtures every test area may use: real Redis servers (see tests/servers.py) and tmpfs
mounts (tests/support.py)."""

from tests.servers import redis_factory, redis_server
from tests.support import tmpfs, tmpfs_mounts

__all__ = ["redis_factory", "redis_server", "tmpfs", "tmpfs_mounts"]
