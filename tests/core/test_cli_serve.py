"""The real `runbook-exporter` process: listening, signals, TLS and basic auth, bad flags."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import trustme

from tests.support import free_port, wait_until

CONFIG = 'checks:\n  - {name: self, kind: tcp, address: "127.0.0.1:%d"}\n'


class Process:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.communicate(timeout=30)


def fetch(
    url: str, context: ssl.SSLContext | None = None, auth: str | None = None
) -> tuple[int, str]:
    request = urllib.request.Request(url)  # noqa: S310 - the tests build http(s) loopback URLs
    if auth:
        request.add_header("Authorization", "Basic " + b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:  # noqa: S310 - as above
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def serving(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        fetch(url, context)
    except (urllib.error.URLError, ConnectionError, ssl.SSLError, OSError):
        return False
    return True


def test_default_config_serves_real_metrics(processes: list[Process]) -> None:
    port = free_port()
    processes.append(Process("--web.listen-address", f"127.0.0.1:{port}"))
    wait_until(lambda: serving(f"http://127.0.0.1:{port}/-/healthy"), 30, "exporter up")
    status, body = fetch(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    # Both embedded checks (disk of the working directory, our own /-/healthy) succeed.
    success = {
        line.split("{", 1)[1].split("}", 1)[0]: line.rsplit(" ", 1)[1]
        for line in body.splitlines()
        if line.startswith("runbook_exporter_check_success{")
    }
    assert success == {
        'check="working-directory-disk",kind="disk"': "1.0",
        'check="self",kind="http"': "1.0",
    }
    code, err = processes[0].stop()
    assert code == 0, err
    assert "shutting down" in err


def test_sighup_reloads_and_sigterm_exits_cleanly(tmp_path: Path, processes: list[Process]) -> None:
    port = free_port()
    config = tmp_path / "c.yml"
    config.write_text(CONFIG % port)
    processes.append(
        Process("--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}")
    )
    wait_until(lambda: serving(f"http://127.0.0.1:{port}/-/ready"), 30, "exporter up")
    config.write_text(CONFIG.replace("self", "renamed") % port)
    processes[0].proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: 'check="renamed"' in fetch(f"http://127.0.0.1:{port}/metrics")[1], 30, "reload"
    )
    config.write_text("checks: [")
    processes[0].proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload_successful 0.0" in fetch(f"http://127.0.0.1:{port}/metrics")[1], 30)
    assert 'check="renamed"' in fetch(f"http://127.0.0.1:{port}/metrics")[1]
    code, err = processes[0].stop()
    assert code == 0, err
    assert "configuration reloaded" in err
    assert "reload refused" in err
    assert "Traceback" not in err


def test_port_in_use_exits_nonzero_with_clear_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "exporter", "--web.listen-address", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 1
    assert "cannot listen" in proc.stderr
    assert f"127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_tls_and_basic_auth_from_web_config(tmp_path: Path, processes: list[Process]) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    hashed = bcrypt.hashpw(b"correct horse", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {tmp_path}/server.pem\n"
        f"  key_file: {tmp_path}/server.pem\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    port = free_port()
    processes.append(
        Process("--web.config.file", str(web), "--web.listen-address", f"127.0.0.1:{port}")
    )
    context = ssl.create_default_context()
    ca.configure_trust(context)
    url = f"https://127.0.0.1:{port}/metrics"
    wait_until(lambda: serving(url, context), 30, "TLS listener")
    assert fetch(url, context)[0] == 401
    assert fetch(url, context, "prometheus:wrong")[0] == 401
    status, body = fetch(url, context, "prometheus:correct horse")
    assert status == 200
    assert "runbook_exporter_check_success" in body
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        fetch(f"http://127.0.0.1:{port}/metrics")  # plain HTTP is not served


@pytest.mark.parametrize(
    ("web_config", "message"),
    [
        (
            "basic_auth_users:\n  admin: plaintext\n",
            "basic_auth_users.admin: expected a bcrypt hash such as $2y$10$...",
        ),
        (
            "basic_auth_users:\n  admin: '$2y$10$tooshort'\n",
            "basic_auth_users.admin: not a valid bcrypt hash",
        ),
        (
            "tls_server_config:\n  cert_file: /nonexistent/cert.pem\n"
            "  key_file: /nonexistent/key.pem\n",
            "tls_server_config.cert_file: cannot read",
        ),
        ("tls_server_config: {cert_file: a}\nbasic_auth: {}\n", "basic_auth: unknown key"),
    ],
)
def test_bad_web_config_is_refused_at_start(tmp_path: Path, web_config: str, message: str) -> None:
    web = tmp_path / "web.yml"
    web.write_text(web_config)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "--web.config.file",
            str(web),
            "--web.listen-address",
            f"127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
