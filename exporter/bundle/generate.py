"""All generated files of the bundle as ``{relative path: text}``; write them or compare."""

from __future__ import annotations

from pathlib import Path

from exporter.bundle.profile import Profile
from exporter.bundle.rules import drill, rules_file


def generate(
    profiles: list[Profile], drill_factor: float = 1.0, webhook_url: str | None = None
) -> dict[str, str]:
    """Every output file. ``drill_factor`` scales time windows for end-to-end drills;
    ``webhook_url`` sends every receiver to one local webhook instead of real channels."""
    from exporter.bundle.alertmanager import alertmanager_files
    from exporter.bundle.coverage import coverage_files
    from exporter.bundle.dashboards import dashboard_files
    from exporter.bundle.docs import docs_files
    from exporter.bundle_k8s import OUTPUT as K8S_RULES
    from exporter.bundle_k8s import manifests

    if drill_factor != 1.0:
        profiles = [drill(p, drill_factor) for p in profiles]
    files = {f"rules/{p.slug}.rules.yml": rules_file(p) for p in profiles}
    files.update(alertmanager_files(profiles, webhook_url=webhook_url))
    files.update(dashboard_files(profiles))
    files.update(docs_files(profiles))
    files.update(coverage_files(profiles))
    files.update(
        {f"{K8S_RULES.as_posix()}/{name}": text for name, text in manifests(profiles).items()}
    )
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
    generated-looking files nobody generates any more."""
    differing = [
        relative
        for relative, text in files.items()
        if not (root / relative).is_file()
        or (root / relative).read_text(encoding="utf-8") != text
    ]
    for pattern in (
        "rules/*.rules.yml",
        "dashboards/*.json",
        "docs/runbooks/*.md",
        "deploy/kubernetes/rules/*.yaml",
    ):
        for path in sorted(root.glob(pattern)):
            relative = path.relative_to(root).as_posix()
            if relative not in files:
                differing.append(relative)
    return sorted(differing)
