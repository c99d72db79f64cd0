"""Turning check results into the Prometheus and OpenMetrics exposition formats."""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING

from exporter.families import CHECK_DURATION, CHECK_SUCCESS
from exporter.runner import CheckResult
from exporter.samples import Sample, to_metrics

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

# prometheus_client is imported for OpenMetrics only: the text format, which Prometheus
# asks for by default, is written here (byte for byte as prometheus_client writes it, which
# tests/core/test_exposition.py checks), so a serving exporter does not load it.
OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
# prometheus_client now labels its output version=1.0.0, which Prometheus 2.x does not know;
# the bytes are the classic 0.0.4 format (no UTF-8 names here), so say that.
TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def result_samples(result: CheckResult) -> list[Sample]:
    """The uniform success/duration samples the runner owns for every check."""
    base = (("check", result.name), *result.labels, ("kind", result.kind))
    return [
        Sample(CHECK_SUCCESS, base, 1.0 if result.success else 0.0),
        Sample(CHECK_DURATION, base, result.duration),
    ]


def all_samples(results: Sequence[CheckResult]) -> Iterator[Sample]:
    """The uniform samples of every check first, then each kind's own."""
    yield from chain.from_iterable(result_samples(r) for r in results)
    yield from chain.from_iterable(r.samples for r in results)


def build_metrics(results: Sequence[CheckResult], extra: Sequence[Metric] = ()) -> list[Metric]:
    """All families of one scrape: the uniform ones first, then each kind's samples."""
    return to_metrics(all_samples(results), extra)


def go_float(value: float) -> str:
    """A sample value as Prometheus' Go client writes it: ``+Inf``, ``-Inf``, ``NaN``,
    Python's shortest repr otherwise, switching to an exponent where Go does (large values
    such as 1234567.0 become ``1.234567e+06``)."""
    value = float(value)  # an int is written as a float, 7 -> 7.0, as prometheus_client does
    if value != value:  # NaN is the one value unequal to itself
        return "NaN"
    if value in (math.inf, -math.inf):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    digits_before_point = text.find(".")
    if value > 0 and digits_before_point > 6:
        digits = text[:digits_before_point] + text[digits_before_point + 1 :]
        mantissa = (digits[0] + "." + digits[1:]).rstrip("0").rstrip(".")
        return f"{mantissa}e+{digits_before_point - 1:02d}"
    return text


_go_float = go_float


def _escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class TextWriter:
    """Writes samples in the Prometheus text format, byte for byte as prometheus_client does.

    Going through prometheus_client's Metric objects costs about 5 µs a sample, half of a
    1,000-queue scrape; label sets repeat from scrape to scrape, so their rendered form
    is kept (bounded) and a sample line is mostly one dict lookup.
    """

    MAX_CACHED_LABEL_SETS = 200_000

    def __init__(self) -> None:
        self._labels: dict[tuple[tuple[str, str], ...], str] = {}

    def _label_text(self, labels: tuple[tuple[str, str], ...]) -> str:
        text = self._labels.get(labels)
        if text is None:
            if len(self._labels) >= self.MAX_CACHED_LABEL_SETS:
                self._labels.clear()
            inner = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in sorted(labels))
            text = self._labels[labels] = f"{{{inner}}}" if inner else ""
        return text

    def write(self, samples: Iterable[Sample]) -> bytes:
        groups: dict[str, list[Sample]] = {}
        for sample in samples:
            group = groups.get(sample.family.name)
            if group is None:
                groups[sample.family.name] = group = []
            group.append(sample)
        out: list[str] = []
        label_text = self._label_text
        for name, group in groups.items():
            family = group[0].family
            help_text = family.help.replace("\\", r"\\").replace("\n", r"\n")
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} {family.type}\n")
            counter = family.type == "counter"
            for sample in group:
                value = sample.value
                if counter and value != value:  # NaN: no such counter this scrape
                    continue
                out.append(f"{name}{label_text(sample.labels)} {_go_float(value)}\n")
        return "".join(out).encode()


class _Families:
    """The minimal collector interface prometheus_client's encoders read."""

    def __init__(self, metrics: Sequence[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Sequence[Metric]:
        return self._metrics


def wants_openmetrics(accept: str | None) -> bool:
    return bool(accept and "application/openmetrics-text" in accept)


def encode(metrics: Sequence[Metric], accept: str | None) -> tuple[bytes, str]:
    """Encode for the Accept header with prometheus_client: OpenMetrics when asked, else
    the text format."""
    from prometheus_client import exposition as text_format
    from prometheus_client.openmetrics import exposition as openmetrics_format

    # The encoders only call .collect(); they are typed against CollectorRegistry.
    if wants_openmetrics(accept):
        openmetrics: Callable[[_Families], bytes] = openmetrics_format.generate_latest
        return openmetrics(_Families(metrics)), OPENMETRICS_TYPE
    text: Callable[[_Families], bytes] = text_format.generate_latest
    return text(_Families(metrics)), TEXT_TYPE


def encode_samples(samples: Sequence[Sample], accept: str | None) -> tuple[bytes, str]:
    """Samples for the Accept header: OpenMetrics through prometheus_client when asked,
    else the text format written here."""
    if wants_openmetrics(accept):
        return encode(to_metrics(samples), accept)
    return TextWriter().write(samples), TEXT_TYPE


_EOF = b"# EOF\n"
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name/mtime, OS unknown
GZIP_LEVEL = 5


@dataclass
class _Encoded:
    """The checks' part of a scrape in one format, with its gzip segment made on demand."""

    source: Sequence[CheckResult]  # the sequence encoded (the runner reuses it while cached)
    results: tuple[CheckResult, ...]
    plain: bytes
    deflated: bytes | None = None  # raw deflate, sync-flushed so more blocks may follow
    plain_crc: int = 0  # CRC-32 of plain, made with deflated

    def reusable_for(self, source: Sequence[CheckResult]) -> bool:
        if source is self.source:
            return True
        same = len(self.results) == len(source) and all(
            a is b for a, b in zip(self.results, source, strict=True)
        )
        if same:
            self.source = source  # the next scrape of this state is recognised at once
        return same

    def gzip_with(self, tail: bytes) -> bytes:
        """One gzip member holding ``plain + tail``; only ``tail`` is compressed anew."""
        if self.deflated is None:
            head = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
            self.deflated = head.compress(self.plain) + head.flush(zlib.Z_SYNC_FLUSH)
            self.plain_crc = zlib.crc32(self.plain)
        # A second, independent compressor never refers back into the cached blocks, and
        # the sync flush left them byte-aligned and non-final, so the streams concatenate.
        rest = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        deflated_tail = rest.compress(tail) + rest.flush()
        crc = zlib.crc32(tail, self.plain_crc)
        size = (len(self.plain) + len(tail)) & 0xFFFFFFFF
        trailer = struct.pack("<II", crc, size)
        return _GZIP_HEADER + self.deflated + deflated_tail + trailer


class Renderer:
    """Encodes scrapes, reusing the checks' bytes while every result is the same object.

    With ``min_interval`` most scrapes reuse every result; re-encoding (and re-compressing)
    thousands of unchanged series each time would dominate the scrape, so only the
    exporter's own, always fresh, families are encoded again and appended.
    """

    def __init__(self) -> None:
        self._cache: dict[bool, _Encoded] = {}
        self._text = TextWriter()

    def render(
        self,
        results: Sequence[CheckResult],
        own: Sequence[Sample],
        accept: str | None,
        *,
        gzip: bool = False,
    ) -> tuple[bytes, str]:
        """The body (gzip-compressed when asked) and its content type."""
        openmetrics = wants_openmetrics(accept)
        encoded = self._cache.get(openmetrics)
        if encoded is None or not encoded.reusable_for(results):
            key = tuple(results)
            if openmetrics:
                checks = encode(build_metrics(key), accept)[0].removesuffix(_EOF)
            else:
                checks = self._text.write(all_samples(key))
            encoded = _Encoded(results, key, checks)
            self._cache[openmetrics] = encoded
        if openmetrics:
            tail, content_type = encode(to_metrics(own), accept)  # ends with # EOF
        else:
            tail, content_type = self._text.write(own), TEXT_TYPE
        if gzip:
            return encoded.gzip_with(tail), content_type
        return encoded.plain + tail, content_type
