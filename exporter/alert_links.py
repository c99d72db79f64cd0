"""Which alerts each check feeds, with their runbook pages, for the status page.

A profile's ``bundle:`` section defines the alerts; the same code that generates the
rules (``exporter.bundle``) reads it here, so a check's row links exactly the runbook
sections whose ``runbook_url`` its alerts carry. A config without ``bundle:``, or one the
bundle reader refuses, simply shows no links: the status page never fails over it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from exporter.config import Config, parse_yaml
from exporter.fields import ConfigError
from exporter.logs import event

AlertLink = tuple[str, str, str]  # alert name, severity, runbook URL
_CACHE: dict[int, tuple[Config, dict[str, list[AlertLink]]]] = {}


def alerts_by_check(config: Config) -> dict[str, list[AlertLink]]:
    """Check name -> the alerts whose query selects it (read once per loaded config)."""
    cached = _CACHE.get(id(config))
    if cached is not None and cached[0] is config:
        return cached[1]
    links = _read(config.source)
    if len(_CACHE) >= 4:
        _CACHE.clear()
    _CACHE[id(config)] = (config, links)
    return links


def _read(source: str) -> dict[str, list[AlertLink]]:
    path = Path(source)
    if not path.is_file():
        return {}
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"), source)
        if not isinstance(data, dict) or "bundle" not in data:
            return {}
        from exporter.bundle.profile import check_names, load_profile_data
        from exporter.bundle.rules import all_alerts, runbook_url

        profile = load_profile_data(data, source, path.stem)
    except (ConfigError, OSError, UnicodeDecodeError) as exc:
        event(logging.DEBUG, "no alert links for the status page", source=source, err=str(exc))
        return {}
    out: dict[str, list[AlertLink]] = {}
    for alert in all_alerts(profile):  # the missing-data guards feed on the checks too
        for check in dict.fromkeys(check_names(alert.query)):
            out.setdefault(check, []).append(
                (alert.name, alert.severity, runbook_url(profile, alert))
            )
    return out
