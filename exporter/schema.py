"""The JSON Schema of the configuration, generated from the code that reads it.

There is no hand-written description of the keys: each kind's own ``parse`` (and the
common check and module keys of exporter/config.py) runs once against a
:class:`SchemaReader`, a :class:`~exporter.fields.Reader` that records every key asked
for, with its type, default and choices, instead of reading a value. ``runbook-exporter
schema`` prints the result; docs/config.schema.json is that output, committed, and a test
fails when they differ. Editors read it through the ``# yaml-language-server: $schema=``
line at the top of every profile.

What a dry run cannot see is left open rather than guessed: a key read only on a branch
the empty mapping does not take accepts any value (``{}``), and a kind's cross-key rules
(``path`` or ``glob``) stay the exporter's own validation.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from typing import Any

from exporter.alerting import alert_settings_schema
from exporter.checks import KINDS
from exporter.config import BUNDLE_ONLY_KEYS, NAME_PATTERN, read_check_common, read_module_common
from exporter.fields import Problems, Reader

SCHEMA_PATH = "docs/config.schema.json"


class _Peeked(dict[str, object]):
    """An empty mapping that remembers which keys a parse function looked at directly.

    A kind that inspects ``reader.data.get(key)`` before reading ``key`` as a mapping
    accepts a scalar shortcut there too (tcp's ``tls: true``, http's ``components: path``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.looked_at: set[str] = set()

    def get(self, key: str, default: object = None) -> object:
        self.looked_at.add(key)
        return default


class SchemaReader(Reader):
    """Records the schema of every key a parse function asks for; every value reads as
    absent, so the parse takes the branches a configuration without the key would."""

    def __init__(self, path: builtins.str = "") -> None:
        self._peeked = _Peeked()
        super().__init__(self._peeked, path, Problems())
        self.properties: dict[builtins.str, object] = {}
        self.required: list[builtins.str] = []

    def _declare(
        self, key: builtins.str, schema: Mapping[builtins.str, object], required: builtins.bool
    ) -> None:
        self._record(key, schema, required)

    def _record(self, key: builtins.str, schema: object, required: builtins.bool) -> None:
        previous = self.properties.get(key)
        if schema == {} and previous is not None:
            return  # raw() after a typed accessor: the typed schema says more
        if previous is not None and previous != schema and previous != {}:
            schema = {"anyOf": [previous, schema]}
        self.properties[key] = schema
        if required and key not in self.required:
            self.required.append(key)

    def schema(self) -> dict[builtins.str, Any]:
        """This mapping's schema: its recorded keys, nothing else."""
        properties = {k: _resolve(v) for k, v in self.properties.items()}
        for key in self._peeked.looked_at & set(properties):
            if isinstance(self.properties[key], SchemaReader):
                shortcut = {"type": ["string", "boolean"], "description": "shortcut form"}
                properties[key] = {"anyOf": [properties[key], shortcut]}
        out: dict[builtins.str, Any] = {"type": "object", "properties": properties}
        if self.required:
            out["required"] = list(self.required)
        out["additionalProperties"] = False
        return out

    # Nested mappings: a dry run reads them too, as if they were written.

    def mapping(self, key: builtins.str, *, required: builtins.bool = False) -> Reader | None:
        child = SchemaReader(self.child_path(key))
        self._record(key, child, required)
        return child

    def mappings(self, key: builtins.str, *, required: builtins.bool = False) -> list[Reader]:
        child = SchemaReader(f"{self.child_path(key)}[0]")
        self._record(key, {"type": "array", "items": child}, required)
        return [child]

    def error(self, key: builtins.str | None, message: builtins.str) -> None:
        return None


def _resolve(value: Any) -> Any:
    """Replace the child readers recorded for nested mappings by their schemas."""
    if isinstance(value, SchemaReader):
        return value.schema()
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    return value


def _check_schema(kind_name: str) -> dict[str, Any]:
    reader = SchemaReader()
    read_check_common(reader, {})
    KINDS[kind_name].parse(reader)
    schema = reader.schema()
    schema["properties"]["alerts"] = alert_settings_schema(KINDS[kind_name].alerts)
    schema["properties"]["kind"] = {"const": kind_name}
    schema["title"] = f"{kind_name} check"
    schema["description"] = KINDS[kind_name].summary
    return schema


def _module_schema(kind_name: str) -> dict[str, Any]:
    kind = KINDS[kind_name]
    reader = SchemaReader()
    read_module_common(reader)
    kind.parse(reader)
    schema = reader.schema()
    schema["properties"]["kind"] = {"const": kind_name}
    schema["properties"].pop(kind.target or "", None)  # each request brings the target
    schema["required"] = [k for k in schema.get("required", []) if k != kind.target]
    schema["title"] = f"{kind_name} /probe module"
    schema["description"] = f"{kind.summary} The /probe target fills {kind.target}."
    return schema


def build() -> dict[str, Any]:
    """The schema of a whole configuration file (a profile is one)."""
    names = sorted(KINDS)
    checks = [{"if": _kind_is(n), "then": _check_schema(n)} for n in names]
    modules = [{"if": _kind_is(n), "then": _module_schema(n)} for n in names if KINDS[n].target]
    kind_names = {"enum": names}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "runbook-exporter configuration",
        "description": "Generated by `runbook-exporter schema` from the kinds' parse "
        "functions; do not edit by hand.",
        "type": "object",
        "properties": {
            "checks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "kind"],
                    "properties": {"kind": kind_names},
                    "allOf": checks,
                },
            },
            "modules": {
                "type": "object",
                "propertyNames": {"pattern": f"^{NAME_PATTERN.pattern}$"},
                "additionalProperties": {
                    "type": "object",
                    "required": ["kind", "allowed_targets"],
                    "properties": {"kind": {"enum": [n for n in names if KINDS[n].target]}},
                    "allOf": modules,
                },
            },
            **{key: {"description": "read by `bundle generate` only"} for key in BUNDLE_ONLY_KEYS},
        },
        "additionalProperties": False,
    }


def _kind_is(name: str) -> dict[str, Any]:
    return {"properties": {"kind": {"const": name}}, "required": ["kind"]}


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"
