"""The redactor on hostile text: linear time, cut reasons, credentials in query strings,
header values and tcp send texts never shown."""

from __future__ import annotations

import time

import pytest

from exporter.config import load_data
from exporter.redact import MASK, MAX_REASON, REDACTOR, Redactor


@pytest.mark.parametrize(
    "text",
    [
        "a" * 400_000,  # the quadratic case: a long alphanumeric run
        "a1+." * 100_000,
        "x://" + "u" * 400_000,
        "x://u:" + "p" * 400_000,
        ("token" * 2 + "=") * 40_000,
        "k" * 400_000 + "=v",
    ],
)
def test_redaction_takes_linear_time(text: str) -> None:
    redactor = Redactor()
    redactor.register("registered-secret")
    started = time.process_time()
    redactor.redact(text)
    # Before: 80 k characters took 6.17 s. Linear time is a few ms per 100 k; the bound
    # only proves "not quadratic" on a loaded machine.
    assert time.process_time() - started < 2.0


def test_reason_is_cut_before_redacting_and_still_masks_a_secret_at_the_cut() -> None:
    redactor = Redactor()
    redactor.register("s3cr3t-value-xyz")
    text = "k" * (MAX_REASON - 5) + " s3cr3t-value-xyz " + "z" * 1_000_000
    started = time.process_time()
    reason = redactor.reason(text)
    assert time.process_time() - started < 0.5
    assert "s3cr3t" not in reason
    assert len(reason) < MAX_REASON + 60
    assert reason.endswith("more characters)")


@pytest.mark.parametrize(
    ("shown", "secret"),
    [
        ("https://h/x?access_token=abc123def", "abc123def"),
        ("https://h/x?key=AIzaSyA-abcdef", "AIzaSyA-abcdef"),
        ("https://acct.blob/c?sv=2024&sig=Zm9vYmFyYmF6%3D&se=2030", "Zm9vYmFyYmF6%3D"),
        ("https://h/x?client_secret=topsecret1", "topsecret1"),
        ("https://h/x?X-Amz-Signature=deadbeef99", "deadbeef99"),
        ("host=db password=hunter22 dbname=app", "hunter22"),
        ("https://h/x?apikey=k3y-v4lue&page=2", "k3y-v4lue"),
    ],
)
def test_credentials_in_query_strings_are_masked(shown: str, secret: str) -> None:
    redacted = Redactor().redact(shown)
    assert secret not in redacted
    assert MASK in redacted


def test_ordinary_parameters_stay_readable() -> None:
    text = "https://h/x?page=2&sort=name&monkey=yes"
    assert Redactor().redact(text) == text


def test_secret_headers_query_params_and_tcp_send_are_masked_in_config_output() -> None:
    secrets = {
        "pw": "hdr-password-111",
        "sig": "hdr-signature-222",
        "bearer": "opaque-333-token",
        "query": "qs-token-444",
        "auth": "tcp-auth-555",
    }
    config = load_data(
        {
            "checks": [
                {
                    "name": "api",
                    "kind": "http",
                    "url": f"http://127.0.0.1:1/x?access_token={secrets['query']}&page=1",
                    "headers": {
                        "X-Password": secrets["pw"],
                        "X-Signature": secrets["sig"],
                        "X-Upstream": "Bearer " + secrets["bearer"],
                    },
                },
                {
                    "name": "cache",
                    "kind": "tcp",
                    "address": "127.0.0.1:6379",
                    "send": f"AUTH default {secrets['auth']}\r\nPING\r\n",
                    "expect": "PONG",
                },
            ]
        },
        "<test>",
        {},
    )
    shown = repr(config.redacted())
    for secret in secrets.values():
        assert secret not in shown, secret
    assert "page=1" in shown
    assert REDACTOR.redact(f"failed: {secrets['auth']}") == f"failed: {MASK}"
