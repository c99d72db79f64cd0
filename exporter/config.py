"""Loading and validating the exporter's YAML configuration, once, at start and reload."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

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
    options: Mapping[str, Any]


@dataclass(frozen=True)
class Config:
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
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


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError([f"{where}: invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: invalid YAML: {exc}"]) from None


def interpolate(value: Any, path: str, env: Mapping[str, str], problems: Problems) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string scalar."""
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
        return [interpolate(v, f"{path}[{i}]", env, problems) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {
            k: interpolate(v, f"{path}.{k}" if path else str(k), env, problems)
            for k, v in value.items()
        }
    return value


def load_data(data: Any, source: str, env: Mapping[str, str] | None = None) -> Config:
    """Validate already-parsed YAML data; raise :class:`ConfigError` listing every problem."""
    problems = Problems()
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            [f"{source}: expected a mapping with a checks list, got {describe(data)}"]
        )
    data = interpolate(data, "", os.environ if env is None else env, problems)
    top = Reader(data, "", problems)
    top.ignore(*BUNDLE_ONLY_KEYS)
    specs: list[CheckSpec[Any]] = []
    names: dict[str, str] = {}
    modules = _parse_modules(top.mapping("modules"))
    # A probe-only exporter needs no checks; without modules the list is the config.
    for check in top.mappings("checks", required=not modules and not top.has("modules")):
        spec = _parse_check(check, names)
        if spec is not None:
            specs.append(spec)
    top.done()
    if problems.items:
        raise ConfigError(problems.ordered())
    return Config(checks=tuple(specs), source=source, modules=modules)


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
) -> tuple[Any, float, tuple[tuple[str, str], ...], tuple[re.Pattern[str], ...]]:
    """The keys every module has (:data:`MODULE_KEYS`); also read by exporter/schema.py."""
    kind_name = module.str("kind")
    timeout = module.duration("timeout", DEFAULT_TIMEOUT)
    labels = module.labels("labels")
    patterns = []
    allowed = module.str_list("allowed_targets", allow_single=False) or ()
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
    kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    options = {k: v for k, v in module.data.items() if k not in MODULE_KEYS}
    if kind is None:
        if isinstance(kind_name, str) and kind_name:
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
) -> tuple[Any, Any, float, float, tuple[tuple[str, str], ...]]:
    """The keys every check has: name, kind, timeout, min_interval, labels.

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
    return name, kind_name, timeout, min_interval, labels


def _parse_check(check: Reader, names: dict[str, str]) -> CheckSpec[Any] | None:
    name, kind_name, timeout, min_interval, labels = read_check_common(check, names)
    kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        if isinstance(kind_name, str) and kind_name:
            check.error(
                "kind", f"unknown kind {describe(kind_name)} (known: {', '.join(sorted(KINDS))})"
            )
        check.ignore(*check.data.keys())
        return None
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
    )


def load_file(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{source}: not UTF-8 text"]) from None
    return load_data(parse_yaml(text, source), source, env)


def load_default(listen_port: int, env: Mapping[str, str] | None = None) -> Config:
    """The embedded default: the disk holding the working directory, and our own health."""
    text = resources.files("exporter").joinpath("default.yml").read_text(encoding="utf-8")
    environment = dict(os.environ if env is None else env)
    environment.setdefault("RUNBOOK_EXPORTER_PORT", str(listen_port))
    environment.setdefault("RUNBOOK_EXPORTER_CWD", os.getcwd())
    return load_data(parse_yaml(text, "<embedded default>"), "<embedded default>", environment)
