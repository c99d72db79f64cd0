"""Profiles' default targets stay on this machine: tests, drills and the demo run them
unchanged, and traffic from them must go to loopback only."""

import json
import re
from pathlib import Path

import pytest

from exporter.config import load_file

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted((ROOT / "profiles").glob("*.yml"))
HOST = re.compile(r"://(?:[^@/\s\"]*@)?(\[[^\]]+\]|[^:/\s\"?]+)")
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_every_default_target_is_loopback(profile: Path) -> None:
    config = load_file(profile, env={})
    text = json.dumps(config.redacted())
    hosts = set(HOST.findall(text))
    for spec in config.checks:
        host = getattr(spec.options, "host", None)
        if isinstance(host, str) and host:
            hosts.add(host)
    assert hosts, "no targets found: the test is not looking at the right fields"
    assert hosts <= LOOPBACK, f"non-loopback defaults in {profile.name}: {hosts - LOOPBACK}"
