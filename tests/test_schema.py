"""The JSON Schema of the configuration (docs/config.schema.json): generated, committed, and
true to every profile and every config example in the docs, checked by the jsonschema
package (a reference this project did not write)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from exporter.config import load_data
from exporter.schema import SCHEMA_PATH, render

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted((ROOT / "profiles").glob("*.yml")) + sorted((ROOT / "examples").glob("*.yml"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SCHEMA_LINE = "# yaml-language-server: $schema=../docs/config.schema.json"


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((ROOT / SCHEMA_PATH).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(data: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(data)
    ]


def test_committed_schema_is_a_fresh_generation() -> None:
    committed = (ROOT / SCHEMA_PATH).read_text(encoding="utf-8")
    assert committed == render(), f"{SCHEMA_PATH} is stale: runbook-exporter schema > {SCHEMA_PATH}"


def test_the_schema_command_prints_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "schema"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == (ROOT / SCHEMA_PATH).read_text(encoding="utf-8")


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_every_profile_names_and_passes_the_schema(profile: Path) -> None:
    text = profile.read_text(encoding="utf-8")
    assert text.splitlines()[0] == SCHEMA_LINE
    assert errors(yaml.safe_load(text)) == []


def doc_examples() -> list[tuple[str, Any]]:
    """Every YAML block in the docs that is an exporter config (checks: or modules:)."""
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for index, block in enumerate(re.findall(r"```ya?ml\n(.*?)```", text, re.S)):
            try:
                data = yaml.safe_load(block)
            except yaml.YAMLError:
                continue
            if isinstance(data, dict) and ("checks" in data or "modules" in data):
                found.append((f"{path.relative_to(ROOT)}#{index}", data))
    return found


EXAMPLES = doc_examples()


def test_the_docs_hold_config_examples() -> None:
    assert len(EXAMPLES) >= 10, [name for name, _ in EXAMPLES]


@pytest.mark.parametrize(("name", "data"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_every_config_example_in_the_docs_passes_the_schema(name: str, data: Any) -> None:
    assert errors(data) == []


def test_the_schema_refuses_what_the_exporter_refuses() -> None:
    good: dict[str, Any] = {"checks": [{"name": "a", "kind": "tcp", "address": "127.0.0.1:1"}]}
    load_data(good, "t")
    assert errors(good) == []
    bad: dict[str, Any]
    for bad in (
        {"checks": [{"name": "a", "kind": "tcp", "adress": "127.0.0.1:1"}]},
        {"checks": [{"name": "a", "kind": "tcpp", "address": "127.0.0.1:1"}]},
        {"checks": [{"name": "a", "kind": "tcp", "address": "127.0.0.1:1", "timeout": "soon"}]},
        {"checks": [{"name": "a", "kind": "http", "url": "http://x", "method": "BREW"}]},
        {"modules": {"m": {"kind": "tcp", "address": "x:1", "allowed_targets": [".*"]}}},
        {"modules": {"m": {"kind": "tcp"}}},
        {"global": {}},
        {"checks": [{"name": "a", "kind": "tcp", "address": "x:1", "alerts": {"nope": True}}]},
        {
            "checks": [
                {
                    "name": "a",
                    "kind": "tcp",
                    "address": "x:1",
                    "alerts": {"cert_expiring": {"above": "14d"}},
                }
            ]
        },
        {
            "checks": [
                {"name": "a", "kind": "disk", "path": "/", "alerts": {"space": {"above": "90%"}}}
            ]
        },
        {
            "checks": [
                {
                    "name": "a",
                    "kind": "disk",
                    "path": "/",
                    "alerts": {"space": {"severity": "Urgent!"}},
                }
            ]
        },
    ):
        assert errors(bad), bad
    alerts = {
        "cert_expiring": {"below": "7d", "for": "1h", "severity": "critical"},
        "check_failing": False,
    }
    good = {"checks": [{"name": "a", "kind": "tcp", "address": "x:1", "alerts": alerts}]}
    load_data(good, "t")
    assert errors(good) == []
