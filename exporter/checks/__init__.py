"""The registry of check kinds: every module in this package that defines ``KIND``.

Config validation, the runner, the docs and the bundle all read :data:`KINDS`; there is no
second list. A kind's module (and so its client library: redis, asyncpg, pymongo, ...) is
imported the first time that kind is looked up, so a config of tcp and http checks never
loads a database driver: validating it stays fast and a serving exporter stays small
(``bench`` reports the footprint). Iterating the whole registry imports every kind.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, MutableMapping

from exporter.checks.base import Kind


class _Registry(MutableMapping[str, Kind[object]]):
    """Kind name → :class:`Kind`; a kind's name is its module's name in this package.

    A kind defined elsewhere (a test's, a plug-in's) is added with ``KINDS[name] = kind``.
    """

    def __init__(self) -> None:
        self._names = sorted(
            info.name
            for info in pkgutil.iter_modules(__path__)
            if not info.name.startswith("_") and info.name != "base"
        )
        self._loaded: dict[str, Kind[object]] = {}

    def __getitem__(self, name: str) -> Kind[object]:
        kind = self._loaded.get(name)
        if kind is None:
            if name not in self._names:
                raise KeyError(name)
            module = importlib.import_module(f"{__name__}.{name}")
            kind = getattr(module, "KIND", None)
            if not isinstance(kind, Kind) or kind.name != name:
                raise TypeError(f"{module.__name__} must define KIND = Kind(name={name!r}, ...)")
            self._loaded[name] = kind
        return kind

    def __setitem__(self, name: str, kind: Kind[object]) -> None:
        if kind.name != name:
            raise ValueError(f"kind {kind.name!r} registered as {name!r}")
        self._loaded[name] = kind
        if name not in self._names:
            self._names = sorted([*self._names, name])

    def __delitem__(self, name: str) -> None:
        if name not in self._names:
            raise KeyError(name)
        self._names = [known for known in self._names if known != name]
        self._loaded.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


KINDS: MutableMapping[str, Kind[object]] = _Registry()
