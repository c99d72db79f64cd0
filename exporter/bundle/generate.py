"""All generated files of the bundle as ``{relative path: text}``; write them or compare.

``OUTPUTS`` is the one table of what the generator owns: each row is the glob of the
paths one writer produces and the writer. ``generate`` runs every writer (and refuses a
path outside its row's glob); ``stale`` compares with a directory and lists files that
match a row's glob but that no writer produces any more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from exporter.bundle.alertmanager import alertmanager_files
from exporter.bundle.coverage import coverage_files
from exporter.bundle.dashboards import dashboard_files
from exporter.bundle.docs import docs_files
from exporter.bundle.generic import GENERIC_K8S, generic_files
from exporter.bundle.generic import RULES_PATH as GENERIC_RULES
from exporter.bundle.kubernetes import OUTPUT as K8S_RULES
from exporter.bundle.kubernetes import manifests
from exporter.bundle.profile import Profile
from exporter.bundle.promtests import test_files
from exporter.bundle.rules import drill, rules_file
from exporter.bundle.scrape import scrape_files


@dataclass(frozen=True)
class Options:
    """How this generation differs from the committed one (drills)."""

    webhook_url: str | None = None


Writer = Callable[[list[Profile], Options], dict[str, str]]

OUTPUTS: tuple[tuple[str, Writer], ...] = (
    ("rules/*.rules.yml", lambda ps, _: {f"rules/{p.slug}.rules.yml": rules_file(p) for p in ps}),
    ("rules/tests/*.test.yml", lambda ps, _: test_files(ps)),
    ("alertmanager/*", lambda ps, o: alertmanager_files(ps, webhook_url=o.webhook_url)),
    ("dashboards/*", lambda ps, _: dashboard_files(ps)),
    ("docs/runbooks/*.md", lambda ps, _: docs_files(ps)),
    ("docs/runbook-coverage.md", lambda ps, _: coverage_files(ps)),
    (f"{K8S_RULES}/*.yaml", lambda ps, _: manifests(ps)),
    ("compose/prometheus.yml", lambda ps, _: scrape_files(ps)),
    # The static rules for any config (exporter/bundle/generic.py), one row per file.
    (GENERIC_RULES, lambda _ps, _o: {GENERIC_RULES: generic_files()[GENERIC_RULES]}),
    (GENERIC_K8S, lambda _ps, _o: {GENERIC_K8S: generic_files()[GENERIC_K8S]}),
    ("deploy/kubernetes/servicemonitor.yaml", lambda ps, _: scrape_files(ps)),
)


def generate(
    profiles: list[Profile], drill_factor: float = 1.0, webhook_url: str | None = None
) -> dict[str, str]:
    """Every output file. ``drill_factor`` scales time windows for end-to-end drills;
    ``webhook_url`` sends every receiver to one local webhook instead of real channels."""
    if drill_factor != 1.0:
        profiles = [drill(p, drill_factor) for p in profiles]
    options = Options(webhook_url=webhook_url)
    files: dict[str, str] = {}
    for pattern, writer in OUTPUTS:
        for path, text in writer(profiles, options).items():
            if fnmatchcase(path, pattern):
                files[path] = text
            elif not any(fnmatchcase(path, other) for other, _ in OUTPUTS):
                raise AssertionError(f"{path} is in no row of OUTPUTS")
    return dict(sorted(files.items()))


def write(files: dict[str, str], root: Path) -> list[str]:
    """Write files under ``root``; return the paths whose content changed."""
    changed = []
    for relative, text in files.items():
        path = root / relative
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        changed.append(relative)
    return changed


def stale(files: dict[str, str], root: Path) -> list[str]:
    """Paths whose committed text differs from ``files`` (missing ones included), plus
    files in a row's glob of ``OUTPUTS`` that nobody generates any more."""
    differing = {
        relative
        for relative, text in files.items()
        if not (root / relative).is_file() or (root / relative).read_text(encoding="utf-8") != text
    }
    for pattern, _ in OUTPUTS:
        for path in root.glob(pattern):
            relative = path.relative_to(root).as_posix()
            if path.is_file() and relative not in files:
                differing.add(relative)
    return sorted(differing)
