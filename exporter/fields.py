"""Typed readers for configuration mappings that collect every problem with its path.

A kind module reads its options through a :class:`Reader`; each accessor either returns a
parsed value or records an error such as ``checks[2].timeout: expected a duration such as
5s, got "soon"`` and returns a placeholder, so that one load reports every problem at once.
"""

from __future__ import annotations

import builtins
import difflib
import enum
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeGuard, TypeVar, overload
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from exporter.redact import REDACTOR, secret_name

T = TypeVar("T")

# What Reader.duration accepts, as the JSON Schema pattern of docs/config.schema.json.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w|y))+$"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists every problem with its path."""

    def __init__(self, problems: list[str]) -> None:
        # A kind may quote a bad value that holds a secret (a DSN token): mask it here,
        # once, rather than trusting every message to be clean.
        # Problems quote the file (a 100 KB kind string): cut before redacting.
        self.problems = [REDACTOR.reason(problem) for problem in problems]
        super().__init__("\n".join(self.problems))


def parse_duration(text: str) -> float | None:
    """Parse a Prometheus duration (``1m30s``, ``500ms``) into seconds; None when invalid."""
    if not text:
        return None
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) else None


def format_duration(seconds: float) -> str:
    """Render seconds as the shortest Prometheus duration (``90`` -> ``1m30s``)."""
    if seconds == 0:
        return "0s"
    millis = round(seconds * 1000)
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)


def describe(value: object) -> str:
    """Show a bad value in an error message: strings quoted, long ones cut."""
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f'"{shown}"'
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return repr(value)


def is_list(value: object) -> TypeGuard[list[object]]:
    """Whether a value as written (:meth:`Reader.raw`) is a list; its items stay unknown
    (``object``) until checked, rather than ``Any``."""
    return isinstance(value, list)


def is_mapping(value: object) -> TypeGuard[Mapping[str, object]]:
    """Whether a value as written is a mapping. A key that is no string (YAML ``1:``)
    is never asked for, so :meth:`Reader.done` reports it as unknown."""
    return isinstance(value, Mapping)


@dataclass
class Problems:
    """Shared collector of configuration problems across one load."""

    items: list[str] = field(default_factory=list)
    # Paths whose value is already known to be broken (an unset ${VAR}): later problems
    # there would only repeat the first one.
    settled: set[str] = field(default_factory=set)

    def add(self, path: str, message: str) -> None:
        """Record ``message`` at ``path`` (``checks[2].url``), unless that path is settled."""
        if path in self.settled:
            return
        self.items.append(f"{path}: {message}" if path else message)

    def settle(self, path: str, message: str) -> None:
        """Record ``message`` and silence any further problem at ``path``."""
        self.add(path, message)
        self.settled.add(path)

    def ordered(self) -> list[str]:
        """Problems grouped by top-level list item (checks[0] first), other keys last."""
        return sorted(self.items, key=_item_index)


def _item_index(problem: str) -> int:
    match = re.match(r"[^.\[:]*\[(\d+)\]", problem)
    return int(match.group(1)) if match else 1 << 30


class _Missing(enum.Enum):
    """The type of the default that says "no default": the key is required."""

    MISSING = enum.auto()


_MISSING: Final = _Missing.MISSING


class Reader:
    """Reads one mapping of a configuration, recording problems under ``path``.

    Each typed accessor (:meth:`str`, :meth:`int`, :meth:`duration`...) marks its key as
    known and returns the parsed value. Without a default the key is required. On a
    problem it records ``path.key: message`` and returns a placeholder of the declared
    type (the default, or ``""``, ``0``, ``0.0``, ``()``) so that parsing goes on and one
    load reports every problem. A ``None`` default makes the result optional
    (``str | None``). Call :meth:`done` last: every key no accessor asked for is unknown.
    """

    def __init__(
        self, data: Mapping[builtins.str, object], path: builtins.str, problems: Problems
    ) -> None:
        self.data = data
        self.path = path
        self.problems = problems
        self._seen: set[builtins.str] = set()

    def child_path(self, key: builtins.str | builtins.int) -> builtins.str:
        """The path of ``key`` (``checks[2].url``) or of list item ``key`` (``checks[2]``)."""
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: builtins.str | None, message: builtins.str) -> None:
        """Record a problem at ``key`` (at this mapping itself when ``key`` is None)."""
        self.problems.add(self.child_path(key) if key is not None else self.path, message)

    def has(self, key: builtins.str) -> builtins.bool:
        """Whether ``key`` is written here (does not mark it as known)."""
        return key in self.data

    def _declare(
        self, key: builtins.str, schema: Mapping[builtins.str, object], required: builtins.bool
    ) -> None:
        """Hook for the schema's dry run (exporter/schema.py): the JSON Schema of what an
        accessor accepts at ``key``. Reading a real configuration ignores it."""

    def _value(self, key: builtins.str, default: object) -> object:
        """The value as written, marking ``key`` as known; records a problem when required."""
        self._seen.add(key)
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            self.error(key, "required but missing")
            return None
        return default

    def raw(self, key: builtins.str, default: object = _MISSING) -> object:
        """The value as written, for a caller that checks its type itself."""
        self._declare(key, {}, default is _MISSING)
        return self._value(key, default)

    def _typed(
        self, key: builtins.str, default: object, kind: type[T], what: builtins.str
    ) -> T | None:
        """The value when it is present and a ``kind``; None (and a problem when present)
        otherwise. ``True`` is no number."""
        value = self._value(key, default)
        if key not in self.data:
            return None
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            return value
        self.error(key, f"expected {what}, got {describe(value)}")
        return None

    def _str(
        self, key: builtins.str, default: builtins.str | _Missing | None, non_empty: builtins.bool
    ) -> builtins.str | None:
        value = self._typed(key, default, builtins.str, "a string")
        if value is None:
            return "" if default is _MISSING else default
        if non_empty and not value:
            self.error(key, "must not be empty")
        return value

    @overload
    def str(
        self, key: builtins.str, default: builtins.str = ..., *, non_empty: builtins.bool = True
    ) -> builtins.str: ...
    @overload
    def str(
        self, key: builtins.str, default: None, *, non_empty: builtins.bool = True
    ) -> builtins.str | None: ...
    def str(
        self,
        key: builtins.str,
        default: builtins.str | _Missing | None = _MISSING,
        *,
        non_empty: builtins.bool = True,
    ) -> builtins.str | None:
        """A string; ``non_empty`` refuses ``""`` when it is written."""
        self._declare(key, _string_schema(default, non_empty), default is _MISSING)
        return self._str(key, default, non_empty)

    @overload
    def secret(self, key: builtins.str, default: builtins.str = ...) -> builtins.str: ...
    @overload
    def secret(self, key: builtins.str, default: None) -> builtins.str | None: ...
    def secret(
        self, key: builtins.str, default: builtins.str | _Missing | None = _MISSING
    ) -> builtins.str | None:
        """A string that is a secret (token, password): registered for redaction."""
        self._declare(key, _string_schema(default, non_empty=True), default is _MISSING)
        value = self._str(key, default, non_empty=True)
        if value:
            REDACTOR.register(value)
        return value

    def unique_name(
        self,
        key: builtins.str,
        seen: dict[builtins.str, builtins.str],
        pattern: re.Pattern[builtins.str],
        what: builtins.str = "name",
    ) -> builtins.str:
        """A required name matching ``pattern`` and not yet in ``seen`` (name -> path)."""
        self._declare(key, {"type": "string", "pattern": f"^{pattern.pattern}$"}, True)
        name = self._str(key, _MISSING, non_empty=True) or ""
        if name:
            if not pattern.fullmatch(name):
                self.error(key, f"use letters, digits and _.:- only, got {describe(name)}")
            elif name in seen:
                self.error(key, f'duplicate {what} "{name}", first used at {seen[name]}')
            else:
                seen[name] = self.path
        return name

    def bool(
        self, key: builtins.str, default: builtins.bool | _Missing = _MISSING
    ) -> builtins.bool:
        """``true`` or ``false``; a missing required one reads as False."""
        self._declare(key, {"type": "boolean", **_default(default)}, default is _MISSING)
        value = self._typed(key, default, builtins.bool, "true or false")
        if value is None:
            return default is not _MISSING and default
        return value

    def int(
        self,
        key: builtins.str,
        default: builtins.int | _Missing = _MISSING,
        *,
        minimum: builtins.int | None = None,
        maximum: builtins.int | None = None,
    ) -> builtins.int:
        """A whole number, checked against ``minimum`` and ``maximum`` when written."""
        schema: dict[builtins.str, object] = {"type": "integer", **_default(default)}
        if minimum is not None:
            schema["minimum"] = minimum
        if maximum is not None:
            schema["maximum"] = maximum
        self._declare(key, schema, default is _MISSING)
        value = self._typed(key, default, builtins.int, "a whole number")
        if value is None:
            return 0 if default is _MISSING else default
        if minimum is not None and value < minimum:
            self.error(key, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            self.error(key, f"must be at most {maximum}, got {value}")
        return value

    @overload
    def duration(
        self, key: builtins.str, default: builtins.float = ..., *, positive: builtins.bool = True
    ) -> builtins.float: ...
    @overload
    def duration(
        self, key: builtins.str, default: None, *, positive: builtins.bool = True
    ) -> builtins.float | None: ...
    def duration(
        self,
        key: builtins.str,
        default: builtins.float | _Missing | None = _MISSING,
        *,
        positive: builtins.bool = True,
    ) -> builtins.float | None:
        """A Prometheus duration string (``5s``, ``1m30s``) in seconds."""
        self._declare(key, {"type": "string", "pattern": DURATION_PATTERN}, default is _MISSING)
        value = self._value(key, default)
        fallback = 0.0 if default is _MISSING else default
        if key not in self.data:
            return fallback
        seconds = parse_duration(value) if isinstance(value, builtins.str) else None
        if seconds is None:
            self.error(key, f"expected a duration such as 5s, got {describe(value)}")
            return fallback
        if positive and seconds <= 0:
            self.error(key, f"must be longer than 0s, got {describe(value)}")
        return seconds

    @overload
    def choice(
        self, key: builtins.str, choices: tuple[builtins.str, ...], default: builtins.str = ...
    ) -> builtins.str: ...
    @overload
    def choice(
        self, key: builtins.str, choices: tuple[builtins.str, ...], default: None
    ) -> builtins.str | None: ...
    def choice(
        self,
        key: builtins.str,
        choices: tuple[builtins.str, ...],
        default: builtins.str | _Missing | None = _MISSING,
    ) -> builtins.str | None:
        """One of ``choices``; a wrong one reads as the default (else the first choice)."""
        self._declare(key, {"enum": list(choices), **_default(default)}, default is _MISSING)
        value = self._str(key, default, non_empty=True)
        if key in self.data and isinstance(value, builtins.str) and value not in choices:
            self.error(key, f"expected one of {', '.join(choices)}, got {describe(value)}")
            return default if default is not _MISSING else choices[0]
        return value

    @overload
    def regex(self, key: builtins.str) -> re.Pattern[builtins.str]: ...
    @overload
    def regex(self, key: builtins.str, default: None) -> re.Pattern[builtins.str] | None: ...
    def regex(
        self, key: builtins.str, default: _Missing | None = _MISSING
    ) -> re.Pattern[builtins.str] | None:
        """A regular expression, compiled; an invalid one reads as the empty pattern."""
        self._declare(key, {"type": "string", "format": "regex"}, default is _MISSING)
        value = self._str(key, default, non_empty=True)
        if value is None:
            return None
        if key not in self.data:
            return re.compile("")
        try:
            return re.compile(value)
        except re.error as exc:
            self.error(key, f"invalid regular expression: {exc}")
            return re.compile("")

    @overload
    def str_list(
        self,
        key: builtins.str,
        default: Sequence[builtins.str] = ...,
        *,
        allow_single: builtins.bool = True,
    ) -> tuple[builtins.str, ...]: ...
    @overload
    def str_list(
        self, key: builtins.str, default: None, *, allow_single: builtins.bool = True
    ) -> tuple[builtins.str, ...] | None: ...
    def str_list(
        self,
        key: builtins.str,
        default: Sequence[builtins.str] | _Missing | None = _MISSING,
        *,
        allow_single: builtins.bool = True,
    ) -> tuple[builtins.str, ...] | None:
        """A list of strings; a single string counts as a one-element list when allowed."""
        array = {"type": "array", "items": {"type": "string"}}
        schema = {"anyOf": [{"type": "string"}, array]} if allow_single else array
        self._declare(key, schema, default is _MISSING)
        value = self._value(key, default)
        if key not in self.data:
            return () if default is _MISSING else None if default is None else tuple(default)
        if allow_single and isinstance(value, builtins.str):
            return (value,)
        if is_list(value):
            strings = tuple(v for v in value if isinstance(v, builtins.str))
            if len(strings) == len(value):
                return strings
        self.error(key, f"expected a list of strings, got {describe(value)}")
        return ()

    @overload
    def url(
        self, key: builtins.str, schemes: tuple[builtins.str, ...], default: builtins.str = ...
    ) -> builtins.str: ...
    @overload
    def url(
        self, key: builtins.str, schemes: tuple[builtins.str, ...], default: None
    ) -> builtins.str | None: ...
    def url(
        self,
        key: builtins.str,
        schemes: tuple[builtins.str, ...],
        default: builtins.str | _Missing | None = _MISSING,
    ) -> builtins.str | None:
        """A URL with one of ``schemes``; its password is registered for redaction."""
        described = " or ".join(f"{s}://" for s in schemes)
        schema = {"type": "string", "minLength": 1, "description": f"a URL: {described}"}
        self._declare(key, schema, default is _MISSING)
        value = self._str(key, default, non_empty=True)
        if key not in self.data or not value:
            return value
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - urlsplit checks the port only when asked
        except ValueError as exc:
            self.error(key, f"invalid URL: {exc}")
            return value
        if parts.scheme not in schemes:
            self.error(
                key,
                f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}, "
                f"got {describe(REDACTOR.redact_url(value))}",
            )
        elif not parts.hostname and parts.scheme not in ("unix", "file"):
            self.error(key, f"URL has no host: {describe(REDACTOR.redact_url(value))}")
        if parts.password:
            REDACTOR.register(parts.password)
            REDACTOR.register(unquote(parts.password))
        for name, secret in parse_qsl(parts.query):
            if secret_name(name) and secret:
                REDACTOR.register(secret)
        return value

    def split_url(self, value: builtins.str) -> SplitResult:
        """``urlsplit`` of a value :meth:`url` accepted."""
        return urlsplit(value)

    def labels(self, key: builtins.str) -> tuple[tuple[builtins.str, builtins.str], ...]:
        """A mapping of Prometheus label names to string values, sorted."""
        schema = {
            "type": "object",
            "propertyNames": {"pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
            "additionalProperties": {"type": ["string", "number"]},
        }
        self._declare(key, schema, False)
        value = self._value(key, {})
        if not is_mapping(value):
            self.error(key, f"expected a mapping of label names to values, got {describe(value)}")
            return ()
        out = []
        for name, label_value in value.items():
            if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name):
                self.error(key, f"invalid label name {describe(name)}")
                continue
            if name.startswith("__"):
                self.error(key, f"label names starting with __ are reserved, got {describe(name)}")
                continue
            if not isinstance(label_value, (str, int, float)) or isinstance(label_value, bool):
                self.error(f"{key}.{name}", f"expected a string, got {describe(label_value)}")
                continue
            out.append((name, str(label_value)))
        return tuple(sorted(out))

    def mapping(self, key: builtins.str, *, required: builtins.bool = False) -> Reader | None:
        """A nested mapping, read by its own Reader (``key.field``); None when absent or
        not a mapping (a problem when it is written or ``required``)."""
        value = self._value(key, _MISSING if required else None)
        if value is None:
            return None
        if not is_mapping(value):
            self.error(key, f"expected a mapping, got {describe(value)}")
            return None
        return Reader(value, self.child_path(key), self.problems)

    def mappings(self, key: builtins.str, *, required: builtins.bool = False) -> list[Reader]:
        """A list of mappings, each read by its own Reader (``key[3].field``)."""
        value = self._value(key, _MISSING if required else [])
        if value is None:
            return []
        if not is_list(value):
            self.error(key, f"expected a list, got {describe(value)}")
            return []
        readers = []
        for index, item in enumerate(value):
            path = f"{self.child_path(key)}[{index}]"
            if not is_mapping(item):
                self.problems.add(path, f"expected a mapping, got {describe(item)}")
                continue
            readers.append(Reader(item, path, self.problems))
        return readers

    def ignore(self, *keys: builtins.str) -> None:
        """Mark keys as known without reading them (read elsewhere)."""
        self._seen.update(keys)

    def done(self) -> None:
        """Record every key that no accessor asked for as unknown."""
        for key in self.data:
            if key in self._seen:
                continue
            close = difflib.get_close_matches(str(key), self._seen, n=1)
            if close:
                self.error(str(key), f'unknown key, did you mean "{close[0]}"?')
            else:
                known = ", ".join(sorted(self._seen)) or "none"
                self.error(str(key), f"unknown key (known keys here: {known})")

    def __iter__(self) -> Iterator[builtins.str]:
        return iter(self.data)


def _string_schema(default: object, non_empty: bool) -> dict[str, object]:
    """The schema of :meth:`Reader.str`: a required non-empty string has a minimum length."""
    if non_empty and default is _MISSING:
        return {"type": "string", "minLength": 1}
    return {"type": "string"}


def _default(default: object) -> dict[str, object]:
    """A schema's ``default`` for a plain default value; none for a required key."""
    if isinstance(default, (bool, int, float, str)):
        return {"default": default}
    return {}
