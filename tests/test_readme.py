"""The README's "Using it" commands run as printed, in a shell that activated the venv.

The commands are read from the README itself, so a command added there is tested too.
Stand-ins, all said here: ``my.yml`` is a config written by the test (the README's
placeholder for the reader's own file); ``bundle test`` runs the example bundle's tests
(``examples/my-system``; the profiles' run is tests/bundle's); ``bundle generate`` writes
to a temporary ``--output`` instead of over the work tree, as does ``--output my-bundle`` (``bundle
check`` right after proves the committed files are what it would write). The serving
command is started and stopped on a free port.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
ACTIVATE = Path(sys.prefix) / "bin" / "activate"


def using_it() -> list[str]:
    """The commands of the README's "Using it" block, comments dropped."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Using it", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "README: no sh block under 'Using it'"
    commands = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [command for command in commands if command]


def shell(command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f". {shlex.quote(str(ACTIVATE))} && {command}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def test_the_readme_activates_the_venv_before_its_commands() -> None:
    commands = using_it()
    assert commands[0] == ". .venv/bin/activate"
    assert all(c.startswith("runbook-exporter") for c in commands[1:]), commands


@pytest.mark.parametrize("command", [c for c in using_it() if c.startswith("runbook-exporter ")])
def test_every_readme_command_runs_as_printed(command: str, tmp_path: Path) -> None:
    config = tmp_path / "my.yml"
    config.write_text(f"checks:\n  - {{name: disk, kind: disk, path: {tmp_path}}}\n")
    command = command.replace(" my.yml", f" {shlex.quote(str(config))}")
    if command == "runbook-exporter bundle test":
        # The same command on the example bundle: running the five profiles' shipped tests
        # takes over a minute and is tests/bundle/test_bundle_test.py's job.
        command += " --output examples/my-system"
    if command == "runbook-exporter bundle generate":
        command += f" --output {shlex.quote(str(tmp_path / 'bundle'))}"
    # The reader's own output directory, like my.yml: a temporary one here.
    command = command.replace(" --output my-bundle", f" --output {shlex.quote(str(tmp_path))}")
    if " validate " in command or " check " in command or " bundle " in command:
        done = shell(command, timeout=300)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        return
    if command == "runbook-exporter schema":
        done = shell(command, timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout == (ROOT / "docs" / "config.schema.json").read_text(encoding="utf-8")
        return
    # The serving command: on a free port instead of :9711, until it answers /-/ready.
    import urllib.request

    port = free_port()
    proc = subprocess.Popen(
        [
            "bash",
            "-c",
            f". {shlex.quote(str(ACTIVATE))} && exec {command} "
            f"--web.listen-address 127.0.0.1:{port}",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def ready() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_until(ready, timeout=60, what=command)
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stderr:
            proc.stderr.close()
