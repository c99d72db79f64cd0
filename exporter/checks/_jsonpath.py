"""Dotted paths into parsed JSON (``components.ingestion.lastIngestedAt``, ``sources.0.id``).

Deliberately small: keys separated by dots, a whole-number segment indexes a list, and
``.`` (or an empty path) is the document itself. Lookups fail with a sentence that names
the path and the step that went wrong, ready to be an operator's reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ROOT = "."


class PathError(Exception):
    """A path does not lead to a value; the message names the path and why.

    ``missing`` is True when a key or index is absent (as opposed to a wrong type).
    """

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


@dataclass(frozen=True)
class JsonPath:
    """A parsed dotted path; ``text`` is how it was written, for messages."""

    text: str
    parts: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> JsonPath:
        """Parse ``text``; raises ValueError for empty segments such as ``a..b``."""
        if text in ("", ROOT):
            return cls(ROOT, ())
        parts = tuple(text.split("."))
        if any(not part for part in parts):
            raise ValueError(f'empty segment in path "{text}" (use "." for the whole document)')
        return cls(text, parts)

    @property
    def is_root(self) -> bool:
        return not self.parts

    @property
    def last(self) -> str:
        return self.parts[-1] if self.parts else "value"

    def find(self, doc: Any, where: str = "") -> Any:
        """The value at this path in ``doc``; ``where`` prefixes messages (an element)."""
        current = doc
        for depth, part in enumerate(self.parts):
            if isinstance(current, dict):
                if part not in current:
                    raise PathError(
                        f'{self._shown(where)}: no key "{part}" in {self._walked(where, depth)}',
                        missing=True,
                    )
                current = current[part]
            elif isinstance(current, list):
                if not part.isdigit():
                    raise PathError(
                        f"{self._shown(where)}: {self._walked(where, depth)} is a list, "
                        "not an object"
                    )
                index = int(part)
                if index >= len(current):
                    raise PathError(
                        f"{self._shown(where)}: {self._walked(where, depth)} has "
                        f"{len(current)} elements, no index {index}",
                        missing=True,
                    )
                current = current[index]
            else:
                raise PathError(
                    f"{self._shown(where)}: {self._walked(where, depth)} is "
                    f"{json_type(current)}, not an object",
                    missing=current is None,  # a null parent: nothing there yet
                )
        return current

    def _walked(self, where: str, depth: int) -> str:
        """The part of the path walked before step ``depth``, for a message only: lookups
        run per element per scrape, and nearly all of them succeed."""
        walked = ".".join(self.parts[:depth])
        if where:
            return f"{where}.{walked}".rstrip(".")
        return walked or "the document"

    def _shown(self, where: str) -> str:
        if not where:
            return self.text
        return where if self.is_root else f"{where}.{self.text}"
