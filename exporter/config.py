"""Loading and validating the exporter's YAML configuration, once, at start and reload."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from exporter.alerting import SEVERITIES, parse_alert_settings
from exporter.checks import KINDS
from exporter.checks.base import CheckSpec
from exporter.fields import ConfigError, Problems, Reader, describe
from exporter.redact import REDACTOR

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_FUTURE_SKEW = 300.0
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
# Sections of a profile that only `bundle generate` reads; the exporter skips them.
BUNDLE_ONLY_KEYS = ("bundle",)
_ENV = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_SECRET_VAR = re.compile(r"(?i)pass|secret|token|key|cred|auth")


@dataclass(frozen=True)
class Module:
    """A ``/probe`` module: a check template whose target comes with each request.

    ``options`` are the kind's keys as written (interpolated), without the target key;
    ``allowed_targets`` are fully matched against the requested target, so an open
    ``/probe`` cannot be pointed at anything the operator did not intend.
    """

    name: str
    kind: str
    timeout: float
    labels: tuple[tuple[str, str], ...]
    allowed_targets: tuple[re.Pattern[str], ...]
    options: Mapping[str, object]


@dataclass(frozen=True)
class Config:
    """One loaded, validated configuration: its checks (each a frozen
    :class:`~exporter.checks.base.CheckSpec` with its kind's options) and its ``/probe``
    modules. Built by :func:`load_file`, :func:`load_data` or :func:`load_default`; a
    reload builds a new one and the runner compares specs to keep unchanged probes."""

    checks: tuple[CheckSpec[Any], ...]
    source: str  # file path, or "<embedded default>"
    modules: tuple[Module, ...] = ()

    def module(self, name: str) -> Module | None:
        """The module called ``name``, or None."""
        return next((m for m in self.modules if m.name == name), None)

    def redacted(self) -> dict[str, Any]:
        """The effective configuration with every secret masked, for ``/config``."""
        out: dict[str, Any] = {"checks": [spec_as_dict(spec) for spec in self.checks]}
        if self.modules:
            out["modules"] = {
                m.name: {
                    "kind": m.kind,
                    "timeout": m.timeout,
                    "labels": _plain(dict(m.labels)),
                    "allowed_targets": [p.pattern for p in m.allowed_targets],
                    "options": _plain(m.options),
                }
                for m in self.modules
            }
        return out


def spec_as_dict(spec: CheckSpec[Any]) -> dict[str, Any]:
    """A check as plain data for ``/config``: common fields and options, secrets masked."""
    out: dict[str, Any] = {
        "name": spec.name,
        "kind": spec.kind,
        "timeout": spec.timeout,
        "min_interval": spec.min_interval,
        "max_future_skew": spec.max_future_skew,
    }
    if spec.labels:
        out["labels"] = _plain(dict(spec.labels))
    out["options"] = _plain(spec.options)
    return out


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, re.Pattern):
        return value.pattern
    if isinstance(value, str):
        return REDACTOR.redact_url(value) if "://" in value else REDACTOR.redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return REDACTOR.redact(str(value))


MAX_CONFIG_BYTES = 4 * 1024 * 1024
"""A configuration file larger than this is refused before parsing."""
MAX_DEPTH = 32
"""Levels of nesting a configuration may have (a check's options are 4-6 deep)."""
MAX_NODES = 200_000
"""Values a configuration may hold once every alias is expanded (a billion-laughs file
of a few hundred bytes expands to 10^9)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last, keys
    that are not text, and documents nested or expanded beyond the limits above.

    PyYAML composes recursively (10,000 ``[`` exhaust Python's stack) and shares an
    anchor's value between its aliases, which every later walk copies: both are
    stopped while composing, before anything is built.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        self._nodes += 1
        try:
            if self._nodes > MAX_NODES:  # stop composing early: PyYAML does ~40k values/s
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"more than {MAX_NODES} values in the file",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested more than {MAX_DEPTH} levels deep",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            # A scalar Python refuses: 5,000 digits, 2024-13-45. ConstructorError is not
            # a ValueError, so only the innermost value is named.
            message = str(exc).split(";")[0]
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {message}", node.start_mark
            ) from None

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None:
            _check_expansion(node)
        return node


def _check_expansion(root: yaml.Node) -> None:
    """Refuse alias cycles, and aliases that expand beyond MAX_NODES or MAX_DEPTH."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in size:
            continue
        children = _children(node)
        if not children_done:
            visiting.add(key)
            stack.append((node, True))
            for child in children:
                if id(child) in visiting:
                    raise yaml.composer.ComposerError(
                        None,
                        None,
                        "an alias refers to a value that contains it",
                        child.start_mark,
                    )
                if id(child) not in size:
                    stack.append((child, False))
            continue
        visiting.discard(key)
        size[key] = 1 + sum(size[id(c)] for c in children)
        depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
        problem = None
        if size[key] > MAX_NODES:
            problem = f"more than {MAX_NODES} values here (an alias counts all it repeats)"
        elif depth[key] > MAX_DEPTH:
            problem = f"nested more than {MAX_DEPTH} levels deep once aliases are expanded"
        if problem is not None:
            raise yaml.composer.ComposerError(None, None, problem, node.start_mark)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # "<<: *base": merged by construct_mapping below
        scalar = isinstance(key_node, yaml.ScalarNode)
        key = loader.construct_object(key_node) if scalar else None
        if not isinstance(key, str):
            shown = repr(key) if scalar else "a list or mapping"
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f'keys must be text, got {shown} (quote it: "...")',
                key_node.start_mark,
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def parse_yaml(text: str, source: str) -> object:
    """Parse YAML text (duplicate keys refused); a syntax error becomes a
    :class:`ConfigError` naming ``source:line:column``."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{source}: larger than {MAX_CONFIG_BYTES // 2**20} MiB"])
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError([f"{where}: invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise ConfigError(
            [f"{source}:{line}:{column}: invalid YAML: character {exc.character!r} not allowed"]
        ) from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError([f"{source}: invalid YAML: {first}"]) from None


def interpolate(
    value: object, path: str, env: Mapping[str, str], problems: Problems, depth: int = 0
) -> object:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string scalar."""
    if depth > MAX_DEPTH:
        problems.settle(path, f"nested more than {MAX_DEPTH} levels deep")
        return None
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match["name"], match["default"]
            if name in env:
                result = env[name]
                # Only a value from the environment is a secret: a default is written in
                # the (committed) file, e.g. ${KEYCLOAK_REALM:-pulse}, and masking it would
                # hide plain words everywhere they appear.
                if _SECRET_VAR.search(name) and result:
                    REDACTOR.register(result)
                return result
            if default is not None:
                return default
            problems.settle(path, f"environment variable {name} is not set and has no default")
            return ""

        return _ENV.sub(substitute, value)
    if isinstance(value, list):
        return [
            interpolate(v, f"{path}[{i}]", env, problems, depth + 1) for i, v in enumerate(value)
        ]
    if isinstance(value, Mapping):
        return {
            k: interpolate(v, f"{path}.{k}" if path else str(k), env, problems, depth + 1)
            for k, v in value.items()
        }
    return value


def load_data(data: object, source: str, env: Mapping[str, str] | None = None) -> Config:
    """Validate already-parsed YAML data; raise :class:`ConfigError` listing every problem."""
    problems = Problems()
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            [f"{source}: expected a mapping with a checks list, got {describe(data)}"]
        )
    top = Reader(_interpolate_top(data, env, problems), "", problems)
    top.ignore(*BUNDLE_ONLY_KEYS)
    specs: list[CheckSpec[Any]] = []
    names: dict[str, str] = {}
    modules = _parse_modules(top.mapping("modules"))
    # A probe-only exporter needs no checks; without modules the list is the config.
    severities = _severity_names(data)
    for check in top.mappings("checks", required=not modules and not top.has("modules")):
        spec = _parse_check(check, names, severities)
        if spec is not None:
            specs.append(spec)
    top.done()
    if problems.items:
        raise ConfigError(problems.ordered())
    return Config(checks=tuple(specs), source=source, modules=modules)


def _interpolate_top(
    data: Mapping[str, object], env: Mapping[str, str] | None, problems: Problems
) -> Mapping[str, object]:
    """The top-level mapping with every ``${VAR}`` replaced (a mapping stays a mapping)."""
    out = interpolate(data, "", os.environ if env is None else env, problems)
    return out if isinstance(out, Mapping) else {}  # always one: interpolate keeps shapes


# Keys of a module besides its kind's own options.
MODULE_KEYS = ("kind", "timeout", "labels", "allowed_targets")


def _parse_modules(modules: Reader | None) -> tuple[Module, ...]:
    if modules is None:
        return ()
    out = []
    for name in list(modules.data):
        raw = modules.raw(name)
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            modules.error(str(name), f"use letters, digits and _.:- only, got {describe(name)}")
            continue
        module = modules.mapping(name)
        if module is not None and isinstance(raw, Mapping):
            parsed = _parse_module(name, module)
            if parsed is not None:
                out.append(parsed)
    return tuple(out)


def read_module_common(
    module: Reader,
) -> tuple[str, float, tuple[tuple[str, str], ...], tuple[re.Pattern[str], ...]]:
    """The keys every module has (:data:`MODULE_KEYS`); also read by exporter/schema.py."""
    kind_name = module.str("kind")
    timeout = module.duration("timeout", DEFAULT_TIMEOUT)
    labels = module.labels("labels")
    patterns = []
    allowed = module.str_list("allowed_targets", allow_single=False)
    for index, pattern in enumerate(allowed):
        try:
            patterns.append(re.compile(pattern))
        except re.error as exc:
            module.error(f"allowed_targets[{index}]", f"invalid regular expression: {exc}")
    if module.has("allowed_targets") and not module.data.get("allowed_targets"):
        module.error("allowed_targets", "list at least one pattern the targets must match")
    return kind_name, timeout, labels, tuple(patterns)


def _parse_module(name: str, module: Reader) -> Module | None:
    kind_name, timeout, labels, patterns = read_module_common(module)
    kind = KINDS.get(kind_name)
    options = {k: v for k, v in module.data.items() if k not in MODULE_KEYS}
    if kind is None:
        if kind_name:
            module.error("kind", f'unknown kind "{kind_name}" (known: {", ".join(sorted(KINDS))})')
        return None
    if kind.target is None:
        module.error("kind", f"kind {kind.name} takes no target and cannot be a module")
        return None
    if kind.target in options:
        module.error(kind.target, "set by each /probe request's target; leave it out here")
        return None
    # Validate the kind's own keys now, so a typo fails at load rather than per request;
    # only "target missing" is expected here.
    trial = Problems()
    target_path = module.child_path(kind.target)
    trial_reader = Reader(options, module.path, trial)
    kind.parse(trial_reader)
    trial_reader.done()
    for problem in trial.items:
        if not problem.startswith(f"{target_path}:") and not problem.startswith(
            f"{module.path}: set path"
        ):
            module.problems.add("", problem)
    module.ignore(*options)
    module.done()
    return Module(
        name=name,
        kind=kind.name,
        timeout=timeout,
        labels=labels,
        allowed_targets=tuple(patterns),
        options=MappingProxyType(dict(options)),
    )


def read_check_common(
    check: Reader, names: dict[str, str]
) -> tuple[str, str, float, float, float, tuple[tuple[str, str], ...]]:
    """The keys every check has: name, kind, timeout, min_interval, max_future_skew, labels.

    Also what ``runbook-exporter schema`` reads to describe them (exporter/schema.py).
    """
    name = check.unique_name("name", names, NAME_PATTERN)
    kind_name = check.str("kind")
    timeout = check.duration("timeout", DEFAULT_TIMEOUT)
    min_interval = check.duration("min_interval", 0.0, positive=False)
    max_future_skew = check.duration("max_future_skew", DEFAULT_MAX_FUTURE_SKEW, positive=False)
    labels = check.labels("labels")
    for label, _ in labels:
        if label in ("check", "kind"):
            check.error("labels", f"label {label} is set by the exporter and cannot be overridden")
    return name, kind_name, timeout, min_interval, max_future_skew, labels


def _severity_names(data: Mapping[object, object]) -> tuple[str, ...]:
    """The severities a check's ``alerts:`` may name: the kinds' critical, warning and
    info, plus those the config's ``bundle.routing.severities`` defines (a runbook's
    major, high ...). Read leniently: the bundle generator validates that section."""
    names = list(SEVERITIES)
    bundle = data.get("bundle")
    routing = bundle.get("routing") if isinstance(bundle, Mapping) else None
    entries = routing.get("severities") if isinstance(routing, Mapping) else None
    for entry in entries if isinstance(entries, list) else ():
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if isinstance(name, str) and name not in names:
            names.append(name)
    return tuple(names)


def _parse_check(
    check: Reader, names: dict[str, str], severities: tuple[str, ...]
) -> CheckSpec[object] | None:
    name, kind_name, timeout, min_interval, max_future_skew, labels = read_check_common(
        check, names
    )
    kind = KINDS.get(kind_name)
    if kind is None:
        if kind_name:
            check.error(
                "kind", f"unknown kind {describe(kind_name)} (known: {', '.join(sorted(KINDS))})"
            )
        check.ignore(*check.data.keys())
        return None
    alerts = parse_alert_settings(check, kind.alerts, severities)
    options = kind.parse(check)
    check.done()
    return CheckSpec(
        name=name,
        kind=kind.name,
        timeout=timeout,
        min_interval=min_interval,
        labels=labels,
        options=options,
        max_future_skew=max_future_skew,
        alerts=alerts,
    )


def load_file(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate a configuration file (at most ``MAX_CONFIG_BYTES``, UTF-8);
    raise :class:`ConfigError` listing every problem."""
    source = str(path)
    try:
        with Path(path).open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError([f"{source}: larger than {MAX_CONFIG_BYTES // 2**20} MiB"])
        text = raw.decode("utf-8")
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{source}: not UTF-8 text"]) from None
    return load_data(parse_yaml(text, source), source, env)


def load_default(listen_port: int, env: Mapping[str, str] | None = None) -> Config:
    """The embedded default: the disk holding the working directory, and our own health."""
    from importlib import resources  # only the embedded default reads package data

    text = resources.files("exporter").joinpath("default.yml").read_text(encoding="utf-8")
    environment = dict(os.environ if env is None else env)
    environment.setdefault("RUNBOOK_EXPORTER_PORT", str(listen_port))
    environment.setdefault("RUNBOOK_EXPORTER_CWD", os.getcwd())
    return load_data(parse_yaml(text, "<embedded default>"), "<embedded default>", environment)
