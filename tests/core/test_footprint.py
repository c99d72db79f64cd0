"""A kind's client library is imported only when a check of that kind is configured.

Checked in a new interpreter through ``sys.modules``: what a process imports is what it
pays for in start-up time and memory (bench/ reports the figures).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DRIVERS = ("redis", "pymongo", "bson", "asyncpg", "aiosqlite", "psycopg")


def imported_after(script: str) -> set[str]:
    """Top-level packages imported by ``script`` (run in a new interpreter) of interest here."""
    code = textwrap.dedent(script) + textwrap.dedent(
        """
        import json, sys
        print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_running_tcp_http_disk_and_file_checks_loads_no_database_driver(tmp_path: Path) -> None:
    config = {
        "checks": [
            {"name": "t", "kind": "tcp", "address": "127.0.0.1:1", "timeout": "1s"},
            {"name": "h", "kind": "http", "url": "http://127.0.0.1:1/", "timeout": "1s"},
            {"name": "d", "kind": "disk", "path": str(tmp_path)},
            {"name": "f", "kind": "file", "path": str(tmp_path / "none")},
        ]
    }
    loaded = imported_after(f"""
        import asyncio
        from exporter.cli import run_once
        from exporter.config import load_data
        results = asyncio.run(run_once(load_data({config!r}, "x", {{}})))
        assert [r.name for r in results] == ["t", "h", "d", "f"], results
    """)
    assert loaded.isdisjoint(DRIVERS), sorted(loaded & set(DRIVERS))
    assert "aiohttp" in loaded  # the http check did run


def test_check_of_a_tcp_check_loads_no_web_framework_and_no_driver() -> None:
    config = {"checks": [{"name": "t", "kind": "tcp", "address": "127.0.0.1:1", "timeout": "1s"}]}
    loaded = imported_after(f"""
        import asyncio
        from exporter.cli import run_once
        from exporter.config import load_data
        (result,) = asyncio.run(run_once(load_data({config!r}, "x", {{}})))
        assert not result.success
    """)
    assert loaded.isdisjoint({"aiohttp", *DRIVERS}), sorted(loaded & {"aiohttp", *DRIVERS})


def test_bundle_check_runs_without_the_pgbouncer_extra() -> None:
    """`bundle check` validates every profile (opsconductor has a pgbouncer check): it must
    work after the README's plain install, which has no psycopg."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "sys.modules['psycopg'] = None  # as if the extra were not installed\n"
            "from exporter.cli import main\n"
            "sys.exit(main(['bundle', 'check']))\n",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_serving_exporter_does_not_load_prometheus_client_for_the_text_format() -> None:
    """The text format and the process metrics are written by the exporter itself;
    prometheus_client (about 1 MiB with http.server and wsgiref) is for OpenMetrics only."""
    loaded = imported_after("""
        import asyncio
        from exporter.config import load_data
        from exporter.server import RunningExporter
        async def main():
            config = load_data({"checks": [{"name": "t", "kind": "tcp",
                                            "address": "127.0.0.1:1"}]}, "x", {})
            exporter = RunningExporter(config, lambda: config)
            await exporter.start()
            body, _ = await exporter.scrape("5", None, gzip=True)
            await exporter.stop()
            assert body
        asyncio.run(main())
    """)
    assert "prometheus_client" not in loaded


def test_parsing_the_command_line_does_not_load_the_bundle_generator() -> None:
    """Serving builds the same parser as `bundle`; the generator loads when a bundle command
    runs (it is most of the exporter's own code)."""
    done = subprocess.run(
        [sys.executable, "-c",
         "import sys\n"
         "from exporter.cli import build_parser\n"
         "build_parser().parse_args(['--config.file', 'x.yml'])\n"
         "print(sorted(m for m in sys.modules if m.startswith('exporter.bundle.')))\n"],
        capture_output=True, text=True, timeout=120, check=True, cwd=REPO,
    )  # fmt: skip
    assert done.stdout.strip() == "['exporter.bundle.cli']"
