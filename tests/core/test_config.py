"""Config validation: a table of fixture files and the exact problems each must report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.checks import KINDS
from exporter.config import load_data, load_file
from exporter.fields import ConfigError, format_duration, parse_duration

CONFIGS = Path(__file__).parent / "configs"

EXPECTED = {
    "malformed.yml": [
        f"{CONFIGS}/malformed.yml:4:13: invalid YAML: mapping values are not allowed here"
    ],
    "duplicate-key.yml": [
        f"{CONFIGS}/duplicate-key.yml:5:5: invalid YAML: duplicate key 'address'"
    ],
    "unknown-kind.yml": ['checks[0].kind: unknown kind "smtp" (known: {known})'],
    "duplicate-names.yml": ['checks[1].name: duplicate name "api", first used at checks[0]'],
    "bad-durations.yml": [
        'checks[0].timeout: expected a duration such as 5s, got "soon"',
        "checks[1].timeout: expected a duration such as 5s, got 5",
        'checks[2].timeout: must be longer than 0s, got "0s"',
        'checks[2].min_interval: expected a duration such as 5s, got "-1s"',
    ],
    "missing-env.yml": [
        "checks[0].address: environment variable DB_PORT is not set and has no default",
    ],
    "unknown-keys.yml": [
        'checks[0].adress: unknown key, did you mean "address"?',
        "scrape_interval: unknown key (known keys here: bundle, checks, modules)",
    ],
    "bad-labels.yml": [
        'checks[0].labels: invalid label name "bad-name"',
        "checks[0].labels.team: expected a string, got a list",
        "checks[0].labels: label check is set by the exporter and cannot be overridden",
    ],
    "no-checks.yml": [
        "checks: required but missing",
        "global: unknown key (known keys here: bundle, checks, modules)",
    ],
    "not-a-list.yml": ["checks: expected a list, got a mapping"],
    "many-problems.yml": [
        "checks[0].name: required but missing",
        "checks[0].address: required but missing",
        'checks[1].name: use letters, digits and _.:- only, got "has space"',
        'checks[1].address: expected host:port such as 127.0.0.1:5000, got "localhost"',
        'checks[2]: expected a mapping, got "just a string"',
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_config_reports_every_problem_with_its_path(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_file(CONFIGS / name, env={})
    known = ", ".join(sorted(KINDS))
    assert caught.value.problems == [p.replace("{known}", known) for p in EXPECTED[name]]


def test_every_invalid_fixture_has_expectations() -> None:
    fixtures = {p.name for p in CONFIGS.glob("*.yml")} - {"valid.yml"}
    assert fixtures == set(EXPECTED)


def test_valid_config_interpolates_env_and_defaults() -> None:
    config = load_file(CONFIGS / "valid.yml", env={"API_PORT": "8080"})
    first, second = config.checks
    assert (first.name, first.kind, first.timeout, first.min_interval) == (
        "api-port",
        "tcp",
        1.5,
        30,
    )
    assert first.options.host == "127.0.0.1"
    assert first.options.port == 8080
    assert first.labels == (("team", "ops"), ("tier", "1"))
    assert (second.options.host, second.options.port, second.timeout) == ("::1", 1883, 5.0)


def test_missing_secret_env_is_named_but_never_printed() -> None:
    data = {"checks": [{"name": "a", "kind": "tcp", "address": "${DB_PASSWORD}:1"}]}
    with pytest.raises(ConfigError) as caught:
        load_data(data, "<test>", env={"OTHER": "hunter2-value"})
    assert caught.value.problems == [
        "checks[0].address: environment variable DB_PASSWORD is not set and has no default"
    ]


def test_a_required_key_written_empty_is_a_problem() -> None:
    """``name:`` with nothing after it (YAML null) used to pass as an empty name for a
    required string, number or true/false; every key says so now, as optional ones did."""
    data = {
        "checks": [
            {"name": None, "kind": "tcp", "address": None},
            {"name": "b", "kind": "http", "url": "http://127.0.0.1:1/", "max_items": None},
        ]
    }
    with pytest.raises(ConfigError) as caught:
        load_data(data, "<test>", env={})
    assert caught.value.problems == [
        "checks[0].name: expected a string, got nothing",
        "checks[0].address: expected a string, got nothing",
        "checks[1].max_items: expected a whole number, got nothing",
    ]


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError) as caught:
        load_data(["checks"], "cfg.yml", env={})
    assert caught.value.problems == ["cfg.yml: expected a mapping with a checks list, got a list"]


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_file(tmp_path / "absent.yml")
    assert caught.value.problems == [
        f"{tmp_path}/absent.yml: cannot read: No such file or directory"
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("1m30s", 90.0), ("500ms", 0.5), ("2h", 7200.0), ("1d", 86400.0), ("1.5s", 1.5)],
)
def test_durations_round_trip(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5", "s5", "5s ", "-1s", "5x", "1m-30s"])
def test_bad_durations_are_rejected(text: str) -> None:
    assert parse_duration(text) is None


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_validate_command_prints_problems_and_exits_1() -> None:
    proc = run_cli("validate", "--config.file", str(CONFIGS / "bad-durations.yml"))
    assert proc.returncode == 1
    assert 'checks[0].timeout: expected a duration such as 5s, got "soon"' in proc.stderr
    assert "Traceback" not in proc.stderr


def test_validate_command_prints_summary_and_exits_0() -> None:
    proc = run_cli(
        "validate",
        "--config.file",
        str(CONFIGS / "valid.yml"),
        env={"API_PORT": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{CONFIGS}/valid.yml: valid, 2 checks (2 tcp)"


def test_check_command_exits_2_on_invalid_config() -> None:
    proc = run_cli("check", "--config.file", str(CONFIGS / "malformed.yml"))
    assert proc.returncode == 2
    assert "malformed.yml:4:13: invalid YAML" in proc.stderr


def test_url_passwords_are_registered_decoded_and_from_the_query() -> None:
    from exporter.fields import Problems, Reader
    from exporter.redact import REDACTOR

    problems = Problems()
    reader = Reader(
        {
            "a": "postgresql://u:p%40ss-w0rd@127.0.0.1/db",
            "b": "postgresql://u@h/db?password=qu3ry-pw",
        },
        "",
        problems,
    )
    reader.url("a", ("postgresql",))
    reader.url("b", ("postgresql",))
    shown = REDACTOR.redact("p@ss-w0rd and p%40ss-w0rd and qu3ry-pw")
    assert shown == "<secret> and <secret> and <secret>"
    assert problems.items == []


def test_config_errors_are_redacted_even_when_a_kind_quotes_a_secret() -> None:
    from exporter.redact import REDACTOR

    REDACTOR.register("s3cr3t-t0ken")
    error = ConfigError(['checks[0].dsn: invalid token "s3cr3t-t0ken"'])
    assert error.problems == ['checks[0].dsn: invalid token "<secret>"']
    assert "s3cr3t-t0ken" not in str(error)


def test_only_values_from_the_environment_are_secrets() -> None:
    """A ``${VAR:-default}`` default is written in a committed file: not a secret, even under a
    secret-looking name. The same variable set in the environment is masked everywhere."""
    from exporter.redact import REDACTOR

    data = {
        "checks": [
            {
                "name": "a",
                "kind": "tcp",
                "address": "127.0.0.1:1",
                "labels": {
                    "realm": "${KEYCLOAK_REALM:-pulse-realm-x}",
                    "token": "${API_TOKEN:-default-tok3n}",
                },
            },
        ]
    }
    config = load_data(data, "<test>", env={"API_TOKEN": "env-t0ken-value"})
    labels = dict(config.checks[0].labels)
    assert labels == {"realm": "pulse-realm-x", "token": "env-t0ken-value"}
    shown = REDACTOR.redact("pulse-realm-x default-tok3n env-t0ken-value")
    assert shown == "pulse-realm-x default-tok3n <secret>"
