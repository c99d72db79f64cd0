"""A small PromQL scanner shared by the rules, their tests and the dashboards: add label
matchers to every series selector of a query (and keep a label through its aggregations),
and find the label matchers a query has."""

from __future__ import annotations

import re
from dataclasses import dataclass

_KEYWORDS = {"bool", "and", "or", "unless", "offset", "inf", "nan", "atan2"}
_AGGREGATIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
}
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def _closing(text: str, start: int, open_char: str, close_char: str) -> int:
    """Index just past the bracket matching ``text[start]``, skipping string literals."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char in "\"'`":
            i = text.index(char, i + 1) + 1 if char == "`" else _string_end(text, i)
            continue
        if char == open_char:
            depth += 1
        elif char == close_char:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced {open_char} in {text!r}")


def _string_end(text: str, start: int) -> int:
    quote, i = text[start], start + 1
    while text[i] != quote:
        i += 2 if text[i] == "\\" else 1
    return i + 1


def scoped(query: str, matchers: str, keep: str | None = None) -> str:  # noqa: C901 - a PromQL token scanner: one branch per token kind
    """``query`` with ``matchers`` added to every series selector, and the label ``keep``
    added to every ``by (...)`` and ``on (...)`` list, so aggregations and vector matching
    keep it (the ``system`` label of the isolation convention).

    A small PromQL scanner: identifiers followed by ``(`` are functions, the label list
    after by/without/on/ignoring/group_* is copied as is, keywords stay, and every other
    identifier is a metric name whose ``{...}`` gets the matchers (or gains one).
    """
    out: list[str] = []
    i = 0
    while i < len(query):
        char = query[i]
        if char in "\"'`":
            end = _string_end(query, i)
            out.append(query[i:end])
            i = end
        elif char == "[":
            end = _closing(query, i, "[", "]")
            out.append(query[i:end])
            i = end
        elif char.isdigit() or (char == "." and query[i + 1 : i + 2].isdigit()):
            end = i + 1  # a number, or a duration such as 5m after offset
            while end < len(query) and (
                query[end].isalnum()
                or query[end] == "."
                or (query[end] in "+-" and query[end - 1] in "eE")
            ):
                end += 1
            out.append(query[i:end])
            i = end
        elif char.isalpha() or char in "_:":
            end = i
            while end < len(query) and (query[end].isalnum() or query[end] in "_:"):
                end += 1
            word = query[i:end]
            after = end
            while after < len(query) and query[after] == " ":
                after += 1
            following = query[after : after + 1]
            if word in _GROUPING and following == "(":
                close = _closing(query, after, "(", ")")
                labels = [x.strip() for x in query[after + 1 : close - 1].split(",")]
                if keep and word in ("by", "on") and keep not in labels:
                    out.append(f"{query[i : close - 1]}{', ' if any(labels) else ''}{keep})")
                else:
                    out.append(query[i:close])
                i = close
            elif keep and word in _AGGREGATIONS and following == "(":
                close = _closing(query, after, "(", ")")
                postfix = query[close:].lstrip().startswith(("by", "without"))
                # A bare aggregation drops every label: group by ``keep`` instead.
                spacing = "" if query[end] == " " else " "
                out.append(word if postfix else f"{word} by ({keep}){spacing}")
                i = end
            elif (
                following == "("
                or word in _KEYWORDS
                or (word in _AGGREGATIONS and query[after:].startswith(("by", "without")))
            ):
                out.append(word)
                i = end
            elif following == "{":
                close = _closing(query, after, "{", "}")
                inner = query[after + 1 : close - 1].strip()
                out.append(f"{word}{{{inner + ',' if inner else ''}{matchers}}}")
                i = close
            else:
                out.append(f"{word}{{{matchers}}}")
                i = end
        else:
            out.append(char)
            i += 1
    return "".join(out)


# One label matcher inside a selector's braces: name, operator, the value as written
# (PromQL string escapes, so a regex's backslashes are doubled).
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\(.)")
# Label values the isolation tests give a series so that a matcher does not select it:
# the first one that differs from (or is rejected by) the matcher's own.
DECOYS = ("decoy", "decoy-0")


def unquoted(value: str) -> str:
    r"""A string without its backslash escapes: a PromQL literal's ``\\-`` -> ``\-``, a
    regex's ``\-`` -> ``-``."""
    return _ESCAPE.sub(r"\1", value)


@dataclass(frozen=True)
class Matcher:
    """One label matcher of a query, with its place in the query text."""

    label: str
    op: str
    value: str  # as written in the query
    start: int  # query[start:end] is the matcher
    end: int

    def matches(self, value: str) -> bool:
        """Whether a series whose label has ``value`` ("" when it lacks it) is selected."""
        wanted = unquoted(self.value)
        if self.op in ("=", "!="):
            equal = value == wanted
        else:  # Prometheus anchors its regexes; re.fullmatch reads these the same way
            equal = re.fullmatch(wanted, value) is not None
        return equal if self.op in ("=", "=~") else not equal

    def rejected_value(self) -> str | None:
        """A label value this matcher does not select: for a negative matcher one of the
        values it excludes (``fstype!~"tmpfs|overlay"`` -> tmpfs; ``name!=""`` -> "",
        the label absent), else "decoy"; None when there is none (``=~".*"``)."""
        candidates = list(DECOYS)
        if self.op == "!=":  # the one value it excludes, "|" and all
            candidates[:0] = [unquoted(self.value)]
        elif self.op == "!~":  # each alternative as plain text: escapes gone
            candidates[:0] = [unquoted(unquoted(part)) for part in self.value.split("|")]
        for candidate in candidates:
            if not self.matches(candidate):
                return candidate
        return None


def label_matchers(query: str) -> list[Matcher]:
    """Every label matcher inside the braces of ``query``'s series selectors, in order;
    string literals (a label_replace's arguments) are skipped."""
    out: list[Matcher] = []
    i = 0
    while i < len(query):
        char = query[i]
        if char in "\"'`":
            i = query.index(char, i + 1) + 1 if char == "`" else _string_end(query, i)
        elif char == "{":
            close = _closing(query, i, "{", "}")
            for match in MATCHER.finditer(query, i + 1, close - 1):
                out.append(Matcher(match[1], match[2], match[3], match.start(), match.end()))
            i = close
        else:
            i += 1
    return out


def without_matcher(query: str, matcher: Matcher) -> str:
    """``query`` with ``matcher`` removed from its selector (and the comma it leaves)."""
    head, tail = query[: matcher.start].rstrip(), query[matcher.end :].lstrip()
    if tail.startswith(","):
        tail = tail[1:].lstrip()
    elif head.endswith(","):
        head = head[:-1].rstrip()
    return f"{head}{tail}" if head.endswith("{") or tail.startswith("}") else f"{head} {tail}"
