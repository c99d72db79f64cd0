"""Real servers shared by several test areas and by the bench (bench/harness.py), started from
Debian binaries on loopback."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support import free_port, require_binary, wait_until


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


class RedisServer:
    """One redis-server process on 127.0.0.1:``port``; ``kill``/``start`` keep the port."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        *args: str,
        password: str | None = None,
        tls: TlsFiles | None = None,
    ):
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.password = password
        self.tls = tls
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        # The TLS certificate names localhost; the plain server is reached by address.
        if self.tls:
            return f"rediss://localhost:{self.port}/0"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        """The running server's process id (the bench measures its CPU)."""
        assert self.process is not None, "redis-server is not running"
        return self.process.pid

    def start(self) -> None:
        ports = ["--port", str(self.port)]
        if self.tls:
            ports = [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.tls.cert),
                "--tls-key-file",
                str(self.tls.key),
                "--tls-ca-cert-file",
                str(self.tls.ca),
                "--tls-auth-clients",
                "no",
            ]
        command = [
            self.binary,
            *ports,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--logfile",
            str(self.workdir / "redis.log"),
            *self.args,
        ]
        if self.password:
            command += ["--requirepass", self.password]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_until(self._answers, timeout=20, what=f"redis-server on port {self.port}")

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            log = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"redis-server exited with {self.process.returncode}: {log}")
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False

    def client(self) -> redis.Redis:
        """A synchronous client for arranging data (use as a context manager)."""
        tls: dict[str, Any] = {}
        if self.tls:
            tls = {"ssl": True, "ssl_ca_certs": str(self.tls.ca)}
        return redis.Redis(
            host="localhost" if self.tls else "127.0.0.1",
            port=self.port,
            password=self.password,
            decode_responses=True,
            socket_timeout=10,
            **tls,
        )

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), as an operator's ``systemctl stop`` would."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=20)
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start servers with extra arguments (``--maxmemory 512mb``) or a password."""
    binary = require_binary("redis-server", "redis-server")
    servers: list[RedisServer] = []

    def start(*args: str, password: str | None = None, tls: TlsFiles | None = None) -> RedisServer:
        workdir = tmp_path / f"redis{len(servers)}"
        workdir.mkdir()
        server = RedisServer(binary, workdir, *args, password=password, tls=tls)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def redis_server(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    return redis_factory()
