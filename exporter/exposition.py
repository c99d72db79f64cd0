"""Turning check results into the Prometheus and OpenMetrics exposition formats."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

from prometheus_client import exposition as text_format
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics_format

from exporter.families import CHECK_DURATION, CHECK_SUCCESS
from exporter.runner import CheckResult
from exporter.samples import Sample, to_metrics

OPENMETRICS_TYPE = openmetrics_format.CONTENT_TYPE_LATEST
# prometheus_client now labels its output version=1.0.0, which Prometheus 2.x does not know;
# the bytes are the classic 0.0.4 format (no UTF-8 names here), so say that.
TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def result_samples(result: CheckResult, labels: tuple[tuple[str, str], ...]) -> list[Sample]:
    """The uniform success/duration samples the runner owns for every check."""
    base = (("check", result.name), *labels, ("kind", result.kind))
    return [
        Sample(CHECK_SUCCESS, base, 1.0 if result.success else 0.0),
        Sample(CHECK_DURATION, base, result.duration),
    ]


def build_metrics(
    results: Iterable[tuple[CheckResult, tuple[tuple[str, str], ...]]],
    extra: Sequence[Metric] = (),
) -> list[Metric]:
    """All families of one scrape: the uniform ones first, then each kind's samples."""
    pairs = list(results)
    uniform = chain.from_iterable(result_samples(r, labels) for r, labels in pairs)
    own = chain.from_iterable(r.samples for r, _ in pairs)
    return to_metrics(chain(uniform, own), extra)


class _Families:
    """The minimal collector interface prometheus_client's encoders read."""

    def __init__(self, metrics: Sequence[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Sequence[Metric]:
        return self._metrics


def encode(metrics: Sequence[Metric], accept: str | None) -> tuple[bytes, str]:
    """Encode for the Accept header: OpenMetrics when asked, else the text format."""
    if accept and "application/openmetrics-text" in accept:
        return _openmetrics(_Families(metrics)), OPENMETRICS_TYPE
    return _text(_Families(metrics)), TEXT_TYPE


# The encoders only call .collect(); they are typed against CollectorRegistry.
_openmetrics: Callable[[_Families], bytes] = openmetrics_format.generate_latest
_text: Callable[[_Families], bytes] = text_format.generate_latest


_EOF = b"# EOF\n"
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name/mtime, OS unknown
GZIP_LEVEL = 5


@dataclass
class _Encoded:
    """The checks' part of a scrape in one format, with its gzip segment made on demand."""

    results: tuple[CheckResult, ...]
    plain: bytes
    deflated: bytes | None = None  # raw deflate, sync-flushed so more blocks may follow

    def reusable_for(self, results: tuple[CheckResult, ...]) -> bool:
        return len(self.results) == len(results) and all(
            a is b for a, b in zip(self.results, results, strict=True)
        )

    def gzip_with(self, tail: bytes) -> bytes:
        """One gzip member holding ``plain + tail``; only ``tail`` is compressed anew."""
        if self.deflated is None:
            head = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
            self.deflated = head.compress(self.plain) + head.flush(zlib.Z_SYNC_FLUSH)
        # A second, independent compressor never refers back into the cached blocks, and
        # the sync flush left them byte-aligned and non-final, so the streams concatenate.
        rest = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        deflated_tail = rest.compress(tail) + rest.flush()
        crc = zlib.crc32(tail, zlib.crc32(self.plain))
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

    def render(
        self,
        results: Sequence[CheckResult],
        labels: Mapping[str, tuple[tuple[str, str], ...]],
        own: Sequence[Metric],
        accept: str | None,
        *,
        gzip: bool = False,
    ) -> tuple[bytes, str]:
        """The body (gzip-compressed when asked) and its content type."""
        openmetrics = bool(accept and "application/openmetrics-text" in accept)
        key = tuple(results)
        encoded = self._cache.get(openmetrics)
        if encoded is None or not encoded.reusable_for(key):
            metrics = build_metrics((r, labels.get(r.name, ())) for r in key)
            encoded = _Encoded(key, encode(metrics, accept)[0].removesuffix(_EOF))
            self._cache[openmetrics] = encoded
        tail, content_type = encode(own, accept)  # ends with # EOF in OpenMetrics
        if gzip:
            return encoded.gzip_with(tail), content_type
        return encoded.plain + tail, content_type
