"""Alertmanager: amtool accepts the config, each severity of each profile reaches the
receiver with the channels its runbook names, repeat intervals are the response windows,
and the inhibit rules silence exactly the dependents and the milder duplicates.

amtool cannot evaluate inhibitions: the dependencies run in a real Alertmanager
(test_inhibitions.py); the severity rule is checked here by matching the generated
``inhibit_rules`` the way Alertmanager does (all source/target matchers, ``equal``
labels); the end-to-end drills see them hold live.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from exporter.bundle.alertmanager import receiver_name
from exporter.bundle.generate import generate
from exporter.bundle.profile import Alert, Profile
from exporter.fields import parse_duration
from tests.support import require_binary

CHANNEL_KEYS = {
    "pagerduty": "pagerduty_configs",
    "opsgenie": "opsgenie_configs",
    "slack": "slack_configs",
    "email": "email_configs",
    "sms": "webhook_configs",
}
INLINE_SECRETS = {
    "routing_key",
    "service_key",
    "api_key",
    "api_url",
    "auth_password",
    "credentials",
    "bearer_token",
    "password",
}


def _amtool() -> str:
    return require_binary("amtool", "prometheus-alertmanager")


def _config(bundle: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        (bundle / "alertmanager" / "alertmanager.yml").read_text()
    )
    return loaded


def test_amtool_check_config(bundle: Path) -> None:
    """The fresh config; the committed one equals it (test_generate), so it passes too."""
    result = subprocess.run(
        [_amtool(), "check-config", str(bundle / "alertmanager" / "alertmanager.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert " - 1 templates" in result.stdout


def _route(bundle: Path, labels: dict[str, str]) -> str:
    result = subprocess.run(
        [
            _amtool(),
            "config",
            "routes",
            "test",
            f"--config.file={bundle / 'alertmanager' / 'alertmanager.yml'}",
            *(f"{k}={v}" for k, v in labels.items()),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_each_severity_reaches_its_receivers(bundle: Path, profiles: list[Profile]) -> None:
    config = _config(bundle)
    receivers = {r["name"]: r for r in config["receivers"]}
    for profile in profiles:
        for severity in profile.severities:
            alert = next((a for a in profile.alerts if a.severity == severity.name), None)
            labels = {"runbook": profile.slug, "severity": severity.name}
            if alert is not None:
                labels["alertname"] = alert.name
            assert _route(bundle, labels) == receiver_name(profile, severity.name)
            receiver = receivers[receiver_name(profile, severity.name)]
            expected: dict[str, int] = {}
            for name in severity.receivers:
                channel = next(r for r in profile.receivers if r.name == name)
                key = CHANNEL_KEYS[channel.type]
                expected[key] = expected.get(key, 0) + 1
            got = {k: len(v) for k, v in receiver.items() if k.endswith("_configs")}
            assert got == expected, (profile.slug, severity.name)
            for slack in receiver.get("slack_configs", []):
                target = next(r.target for r in profile.receivers if r.type == "slack")
                assert slack["channel"] == target


def test_runbook_channels_are_where_the_runbooks_put_them(bundle: Path) -> None:
    config = _config(bundle)
    receivers = {r["name"]: r for r in config["receivers"]}
    rta_critical = receivers["rta-cctv-critical"]
    assert "pagerduty_configs" in rta_critical  # "On-call engineer (PagerDuty)"
    assert rta_critical["slack_configs"][0]["channel"] == "#rta-cctv-alerts"
    assert receivers["rta-cctv-low"]["email_configs"][0]["to"] == "ops-team@rta-cctv.ae"
    # face-recognition: PagerDuty critical, SMS urgent, Slack team, Email non-urgent
    assert "pagerduty_configs" in receivers["face-recognition-critical"]
    assert "webhook_configs" in receivers["face-recognition-major"]
    assert set(receivers["face-recognition-minor"]) == {"name", "slack_configs"}
    assert set(receivers["face-recognition-low"]) == {"name", "email_configs"}


def test_unknown_severity_falls_back_to_the_profiles_mildest_receiver(
    bundle: Path, profiles: list[Profile]
) -> None:
    for profile in profiles:
        got = _route(bundle, {"runbook": profile.slug, "severity": "bogus"})
        assert got == receiver_name(profile, profile.severities[-1].name)
    assert _route(bundle, {"runbook": "nobody", "severity": "critical"}) == "default-email"


def test_repeat_intervals_are_the_response_windows(bundle: Path, profiles: list[Profile]) -> None:
    routes = {r["matchers"][0]: r for r in _config(bundle)["route"]["routes"]}
    expected_windows = {
        ("rta-cctv", "P1"): 900,
        ("rta-cctv", "P2"): 3600,
        ("rta-cctv", "P3"): 4 * 3600,
        ("rta-cctv", "P4"): 24 * 3600,
        ("face-recognition", "P1"): 900,
        ("face-recognition", "P2"): 1800,
        ("face-recognition", "P3"): 7200,
        ("face-recognition", "P4"): 24 * 3600,
    }
    for profile in profiles:
        route = routes[f'runbook="{profile.slug}"']
        for severity, child in zip(profile.severities, route["routes"], strict=True):
            assert child["matchers"] == [f'severity="{severity.name}"']
            assert parse_duration(child["repeat_interval"]) == severity.response
            if (profile.slug, severity.priority) in expected_windows:
                assert severity.response == expected_windows[(profile.slug, severity.priority)]
        assert parse_duration(route["group_interval"]) == profile.group_interval


def test_receivers_read_secrets_from_files(bundle: Path) -> None:
    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                assert key not in INLINE_SECRETS, f"{path}.{key} holds a secret inline"
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}[{index}]")

    config = _config(bundle)
    walk(config["receivers"], "receivers")
    text = (bundle / "alertmanager" / "alertmanager.yml").read_text()
    assert "routing_key_file: /etc/alertmanager/secrets/" in text
    assert "api_url_file: /etc/alertmanager/secrets/" in text


# --- inhibition, evaluated as Alertmanager does --------------------------------------

_MATCHER = re.compile(r'^(?P<name>\w+)(?P<op>=~|!~|!=|=)"(?P<value>.*)"$')


def _matches(matchers: list[str], labels: dict[str, str]) -> bool:
    for text in matchers:
        m = _MATCHER.match(text)
        assert m, text
        value = labels.get(m["name"], "")
        op = m["op"]
        if op == "=" and value != m["value"]:
            return False
        if op == "!=" and value == m["value"]:
            return False
        if op == "=~" and not re.fullmatch(m["value"], value):
            return False
        if op == "!~" and re.fullmatch(m["value"], value):
            return False
    return True


def inhibited(target: dict[str, str], source: dict[str, str], rules: list[dict[str, Any]]) -> bool:
    return any(
        _matches(rule["target_matchers"], target)
        and _matches(rule["source_matchers"], source)
        and all(target.get(label, "") == source.get(label, "") for label in rule["equal"])
        and target != source
        for rule in rules
    )


def _labels(profile: Profile, alert: Alert, **extra: str) -> dict[str, str]:
    return {
        "alertname": alert.name,
        "runbook": profile.slug,
        "severity": alert.severity,
        "signal": alert.signal,
        "instance": "exporter:9711",
        **extra,
    }


def test_critical_silences_milder_alerts_of_the_same_thing_only(
    bundle: Path, profiles: list[Profile]
) -> None:
    rules = _config(bundle)["inhibit_rules"]
    for profile in profiles:
        top, *milder = [s.name for s in profile.severities]
        alert = profile.alerts[0]
        source = _labels(profile, alert) | {
            "severity": top,
            "signal": "disk_usage",
            "mountpoint": "/data",
        }
        for severity in milder:
            same = source | {"severity": severity, "alertname": "X"}
            assert inhibited(same, source, rules)
            assert not inhibited(same | {"mountpoint": "/other"}, source, rules)
            assert not inhibited(same | {"signal": "other"}, source, rules)
            assert not inhibited(source, same, rules)  # milder never silences critical


def test_webhook_drill_keeps_routes_and_inhibitions(
    profiles: list[Profile], generated: dict[str, str]
) -> None:
    files = generate(profiles, webhook_url="http://127.0.0.1:5001/hook")
    drill = yaml.safe_load(files["alertmanager/alertmanager.yml"])
    normal = yaml.safe_load(generated["alertmanager/alertmanager.yml"])
    assert drill["route"] == normal["route"]
    assert drill["inhibit_rules"] == normal["inhibit_rules"]
    for receiver in drill["receivers"]:
        assert set(receiver) == {"name", "webhook_configs"}
        assert receiver["webhook_configs"][0]["url"] == "http://127.0.0.1:5001/hook"


def test_message_templates_render(bundle: Path) -> None:
    """amtool renders the receivers' title and text templates with its example data."""
    result = subprocess.run(
        [
            _amtool(),
            "template",
            "render",
            f"--template.glob={bundle / 'alertmanager' / 'templates' / 'runbook.tmpl'}",
            '--template.text={{ template "runbook.title" . }}|{{ template "runbook.text" . }}',
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    title, text = result.stdout.split("|", 1)
    assert title.startswith("[")
    assert text.count("Runbook: ") == 2  # one block per alert of the example group
    assert "instance=foo.bar:1234" in text


def test_dependencies_have_no_cycles(profiles: list[Profile]) -> None:
    """A cycle would let two firing alerts silence each other: nobody gets paged."""
    for profile in profiles:
        graph = {a.short: {d.alert for d in a.depends_on} for a in profile.alerts}

        def reaches(
            start: str, goal: str, seen: set[str], graph: dict[str, set[str]] = graph
        ) -> bool:
            for nxt in graph[start]:
                if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                    return True
            return False

        for short in graph:
            assert not reaches(short, short, set()), f"{profile.slug}: {short} silences itself"
