"""``http``: health endpoints: status code, latency, TLS expiry, and what the JSON body says.

blackbox_exporter's http prober and json_exporter in one check, shaped for ``/health``
documents: the overall status field, per-component status (so a down Redis component
pages separately from the app), timestamps inside the body as freshness (one per list
element when asked, e.g. ``/api/sources``) and numeric values. Every problem with the
response, its JSON, a path or a type fails the check with a reason naming the path.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

from exporter.alerting import DefaultAlert, Panel, TestInput, cert_expiring, dropped, stale
from exporter.checks._jsonpath import JsonPath, PathError, json_type
from exporter.checks._net import (
    TlsOptions,
    error_reason,
    host_problem,
    parse_tls_mapping,
)
from exporter.checks._timestamps import cert_not_after, to_unix_seconds
from exporter.checks.base import BaseProbe, CheckFailed, CheckSpec, Kind, own_budget
from exporter.families import FRESHNESS
from exporter.fields import Reader, describe, is_list
from exporter.redact import REDACTOR, secret_name
from exporter.samples import Family, Sink

if TYPE_CHECKING:  # aiohttp is imported where a probe uses it (docs/architecture.md)
    import aiohttp

USER_AGENT = "runbook-exporter"
DEFAULT_BODY_LIMIT = 1024 * 1024
DEFAULT_OK = ("ok", "up", "healthy", "pass")
DEFAULT_MAX_ITEMS = 100
MAX_LABEL_LENGTH = 256  # characters of a component or item name taken from the body
METHODS = ("GET", "HEAD", "POST", "OPTIONS")
# Header values that are credentials whatever the header is called ("Bearer abc...").
_CREDENTIAL_VALUE = re.compile(r"(?i)\s*(bearer|basic|digest|token|apikey|sharedaccesssignature)\s")
_SIZE = re.compile(r"(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "KiB": 1024,
    "MB": 1000**2,
    "MiB": 1024**2,
    "GB": 1000**3,
    "GiB": 1024**3,
}
_STATUS_CODE = re.compile(r"([1-5])xx")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
_HEADER_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_MAX_REASONS = 3

UP = Family(
    "http_probe_up",
    "gauge",
    "1 when the status code is valid and the JSON health status (if configured) is ok.",
)
STATUS_CODE = Family("http_probe_status_code", "gauge", "Status code of the final response.")
DURATION = Family(
    "http_probe_duration_seconds",
    "gauge",
    "Time from sending the request to the end of the response body.",
)
RESPONSE_SIZE = Family(
    "http_probe_response_size_bytes", "gauge", "Bytes of the response body (decompressed)."
)
TLS_EXPIRY = Family(
    "http_probe_tls_cert_expiry_timestamp_seconds",
    "gauge",
    "Unix time when the server's TLS certificate expires.",
)
COMPONENT_UP = Family(
    "http_component_up",
    "gauge",
    "1 when the component's status in the health document is ok.",
    ("component",),
)
JSON_VALUE = Family(
    "http_json_value",
    "gauge",
    "A number read from the response body (the values option).",
    ("item", "field"),
)


@dataclass(frozen=True)
class ComponentsOptions:
    path: JsonPath
    status_field: JsonPath
    name_field: JsonPath
    ok: tuple[str, ...]


@dataclass(frozen=True)
class Extract:
    """One freshness or values entry: a path, either once or in each element of a list."""

    path: JsonPath
    item: str  # the label when ``each`` is None
    each: JsonPath | None
    item_field: JsonPath | None
    field: str  # the ``field`` label of values
    optional: bool = False  # a missing or null value is skipped, not a failure


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: str


@dataclass(frozen=True)
class HttpOptions:
    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    valid_status_codes: tuple[tuple[int, int], ...] = ((200, 299),)
    follow_redirects: bool = True
    max_redirects: int = 10
    tls: TlsOptions = TlsOptions()  # noqa: RUF009 - frozen, so one shared default is safe
    basic_auth: BasicAuth | None = None
    bearer_token: str | None = None
    body_size_limit: int = DEFAULT_BODY_LIMIT
    status_path: JsonPath | None = None
    status_ok: tuple[str, ...] = DEFAULT_OK
    components: ComponentsOptions | None = None
    freshness: tuple[Extract, ...] = ()
    values: tuple[Extract, ...] = ()
    max_items: int = DEFAULT_MAX_ITEMS

    @property
    def wants_json(self) -> bool:
        return bool(self.status_path or self.components or self.freshness or self.values)


# --- options -------------------------------------------------------------------------


def _json_path(
    reader: Reader, key: str, default: str | None = None, *, required: bool = False
) -> JsonPath | None:
    text = (
        reader.str(key, non_empty=False) if required else reader.str(key, default, non_empty=False)
    )
    if not isinstance(text, str):
        return None
    try:
        return JsonPath.parse(text)
    except ValueError as exc:
        reader.error(key, str(exc))
        return None


def _normalized(value: object) -> str | None:
    """A status value as compared with the ok lists: case-insensitive text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value).strip().lower()
    return None


def _ok_list(reader: Reader, key: str) -> tuple[str, ...]:
    values = reader.str_list(key, list(DEFAULT_OK))
    if reader.has(key) and not values:
        reader.error(key, "expected at least one value")
    return tuple(v.strip().lower() for v in values)


def _status_codes(reader: Reader) -> tuple[tuple[int, int], ...]:
    raw = reader.raw("valid_status_codes", None)
    if raw is None:
        return ((200, 299),)
    items = raw if is_list(raw) else [raw]
    ranges: list[tuple[int, int]] = []
    bad = False
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
            ranges.append((item, item))
        elif isinstance(item, str) and (match := _STATUS_CODE.fullmatch(item)):
            first = int(match[1]) * 100
            ranges.append((first, first + 99))
        else:
            bad = True
            reader.error(
                "valid_status_codes",
                f"expected status codes such as 200 or 2xx, got {describe(item)}",
            )
    if not ranges and not bad:
        reader.error("valid_status_codes", "expected at least one status code")
    return tuple(ranges) or ((200, 299),)


def _body_limit(reader: Reader) -> int:
    raw = reader.raw("body_size_limit", DEFAULT_BODY_LIMIT)
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return raw
    if isinstance(raw, str) and (match := _SIZE.fullmatch(raw.strip())) and int(match[1]) > 0:
        return int(match[1]) * _SIZE_UNITS[match[2]]
    reader.error("body_size_limit", f"expected a size such as 1MiB or 65536, got {describe(raw)}")
    return DEFAULT_BODY_LIMIT


def _headers(reader: Reader) -> tuple[tuple[str, str], ...]:
    headers = reader.mapping("headers")
    if headers is None:
        return ()
    out = []
    for name in headers:
        value = headers.raw(name)
        if not isinstance(value, str):
            headers.error(name, f"expected a string, got {describe(value)}")
            continue
        if not _HEADER_NAME.fullmatch(name):
            headers.error(name, "not a valid header name (letters, digits and !#$%&'*+.^_`|~-)")
            continue
        if _HEADER_CONTROL.search(value):
            # aiohttp refuses these on every request ("unexpected ValueError"); the value
            # may be a token, so it is not quoted.
            headers.error(name, "control characters (such as a line break) in the value")
            continue
        if secret_header(name, value):
            REDACTOR.register(value)
            REDACTOR.register(value.strip().rpartition(" ")[2])
        out.append((name, value))
    return tuple(out)


def secret_header(name: str, value: str) -> bool:
    """A header whose value is a credential: by its name (``X-Api-Key``, ``X-Password``,
    ``X-Signature``, see :func:`exporter.redact.secret_name`) or by its value's scheme
    (``Bearer ...``). Such values are masked everywhere and never follow a redirect to
    another origin."""
    return secret_name(name.removeprefix("X-").removeprefix("x-")) or bool(
        _CREDENTIAL_VALUE.match(value)
    )


def _components(reader: Reader) -> ComponentsOptions | None:
    if isinstance(reader.data.get("components"), str):
        path = _json_path(reader, "components")
        if path is None:
            return None
        return ComponentsOptions(path, JsonPath.parse("status"), JsonPath.parse("name"), DEFAULT_OK)
    sub = reader.mapping("components")
    if sub is None:
        return None
    path = _json_path(sub, "path", required=True)
    status_field = _json_path(sub, "status_field", "status")
    name_field = _json_path(sub, "name_field", "name")
    ok = _ok_list(sub, "ok")
    sub.done()
    if path is None or status_field is None or name_field is None:
        return None
    return ComponentsOptions(path, status_field, name_field, ok)


def _extracts(reader: Reader, key: str, *, values: bool) -> tuple[Extract, ...]:
    out = []
    for entry in reader.mappings(key):
        path = _json_path(entry, "path", required=True)
        each = _json_path(entry, "each")
        item_field = _json_path(entry, "item_field")
        item = entry.str("item", None)
        field = entry.str("field", None) if values else None
        optional = entry.bool("optional", False)
        entry.done()
        if path is None:
            continue
        if each is None and item_field is not None:
            entry.error("item_field", "only used with each (one item per element)")
        if each is not None and item is not None:
            entry.error(
                "item", "set item for one path, or each (with item_field) for one per element"
            )
        out.append(
            Extract(
                path=path,
                item=item or path.text,
                each=each,
                item_field=item_field,
                field=field or path.last,
                optional=optional,
            )
        )
    return tuple(out)


def _auth(reader: Reader, url: str) -> tuple[BasicAuth | None, str | None]:
    basic: BasicAuth | None = None
    sub = reader.mapping("basic_auth")
    if sub is not None:
        basic = BasicAuth(sub.str("username"), sub.secret("password", ""))
        sub.done()
    token = reader.secret("bearer_token", None) or None
    if basic is not None and token is not None:
        reader.error("bearer_token", "set either basic_auth or bearer_token, not both")
    if basic is not None and "@" in url.partition("://")[2].split("/")[0]:
        reader.error("basic_auth", "the url already holds credentials (user:password@)")
    return basic, token


def _check_host(reader: Reader, url: str) -> None:
    if not reader.has("url"):
        return
    try:
        host = reader.split_url(url).hostname
    except ValueError:
        return  # reader.url reported it
    problem = host_problem(host) if host else None
    if problem is not None:
        reader.error("url", f'{problem}: "{host}"')


def parse(reader: Reader) -> HttpOptions:
    url = reader.url("url", ("http", "https"))
    _check_host(reader, url)
    method = reader.choice("method", METHODS, "GET")
    body = reader.str("body", None, non_empty=False)
    tls_reader = reader.mapping("tls")
    tls = parse_tls_mapping(tls_reader) if tls_reader is not None else TlsOptions()
    basic, token = _auth(reader, url)
    return HttpOptions(
        url=url,
        method=method,
        headers=_headers(reader),
        body=body,
        valid_status_codes=_status_codes(reader),
        follow_redirects=reader.bool("follow_redirects", True),
        max_redirects=reader.int("max_redirects", 10, minimum=1, maximum=100),
        tls=tls,
        basic_auth=basic,
        bearer_token=token,
        body_size_limit=_body_limit(reader),
        status_path=_json_path(reader, "status_path"),
        status_ok=_ok_list(reader, "status_ok"),
        components=_components(reader),
        freshness=_extracts(reader, "freshness", values=False),
        values=_extracts(reader, "values", values=True),
        max_items=reader.int("max_items", DEFAULT_MAX_ITEMS, minimum=1),
    )


# --- probing -------------------------------------------------------------------------


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _request_headers(
    options: HttpOptions,
) -> tuple[dict[str, str], dict[str, str]]:
    """(headers for the configured origin, headers for any other origin)."""
    headers = dict(options.headers)
    if options.bearer_token:
        headers["Authorization"] = f"Bearer {options.bearer_token}"
    if options.basic_auth is not None:
        credentials = f"{options.basic_auth.username}:{options.basic_auth.password}".encode()
        headers["Authorization"] = f"Basic {base64.b64encode(credentials).decode()}"
    foreign = {
        name: value
        for name, value in headers.items()
        if name.lower() not in ("authorization", "cookie", "proxy-authorization")
        and not secret_header(name, value)
    }
    return headers, foreign


def _too_large(limit: int) -> str:
    return f"body larger than body_size_limit of {_size_text(limit)}"


def _size_text(size: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def _client_failure(exc: aiohttp.ClientError) -> str:
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS: {error_reason(exc.certificate_error)}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return f"TLS: {error_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connect to {exc.host}:{exc.port}: {error_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection without a response"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "response body was cut off"
    return f"request failed: {type(exc).__name__}: {exc}"


def json_number(value: object) -> float:
    """A number from a JSON body: numbers, numeric strings, booleans as 1/0; else
    ValueError naming the JSON type (the ``values:`` extraction of the http kind)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a number, got {json_type(value)} {_short(value)}".rstrip())


def _short(value: object) -> str:
    if isinstance(value, str):
        return f'"{value[:40]}"' if len(value) <= 40 else f'"{value[:37]}..."'
    if isinstance(value, int | float | bool):
        return json.dumps(value)
    return ""


class _Problems:
    """Reasons gathered while reading one response; the first few become the failure."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, reason: str) -> None:
        self.items.append(reason)

    def raise_if_any(self) -> None:
        if not self.items:
            return
        shown = "; ".join(self.items[:_MAX_REASONS])
        more = len(self.items) - _MAX_REASONS
        raise CheckFailed(shown + (f" (and {more} more)" if more > 0 else ""))


class _PeerCert:
    """The certificate of the last TLS handshake made through one probe's context."""

    def __init__(self) -> None:
        self.der: bytes | None = None

    def recording(self, context: ssl.SSLContext) -> ssl.SSLContext:
        """``context``, changed to note each server certificate it sees.

        aiohttp releases the connection as soon as a short body is in, before the caller
        could ask it for the certificate; the SSL object itself is the reliable witness.
        """
        record = self

        class Recording(ssl.SSLObject):
            def do_handshake(self) -> None:
                super().do_handshake()
                record.der = self.getpeercert(binary_form=True)

        context.sslobject_class = Recording
        return context


class HttpProbe(BaseProbe[HttpOptions]):
    def __init__(self, spec: CheckSpec[HttpOptions]) -> None:
        import aiohttp

        super().__init__(spec)
        self._client: aiohttp.ClientSession | None = None
        self._peer = _PeerCert()
        # Fixed for the probe's life: made here rather than on every scrape.
        self._budget = own_budget(spec.timeout)
        self._timeout = aiohttp.ClientTimeout(total=self._budget)
        body = spec.options.body
        self._body = body.encode() if body is not None else None
        # Headers sent to the configured origin, and the ones a redirect to another origin
        # keeps: credentials (Authorization, X-Api-Key...) stay with the configured host.
        self._headers, self._foreign_headers = _request_headers(spec.options)

    def _session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._client is None or self._client.closed:
            context: ssl.SSLContext | bool = True  # aiohttp's shared default context
            if self.options.url.startswith("https:"):
                # A context per probe (about 0.8 MiB each) only where TLS is spoken.
                try:
                    context = self._peer.recording(self.options.tls.context())
                except (OSError, ssl.SSLError) as exc:
                    raise CheckFailed(f"tls.ca_file: {error_reason(exc)}") from None
            self._client = aiohttp.ClientSession(
                # A fresh connection per probe, as blackbox does: the duration includes
                # connecting, and every probe sees the certificate the server serves now.
                connector=aiohttp.TCPConnector(ssl=context, force_close=True),
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,
            )
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def collect(self, out: Sink) -> None:
        import aiohttp

        options = self.options
        session = self._session()
        problems = _Problems()
        started = time.perf_counter()
        status: int | None = None
        self._peer.der = None
        try:
            async with asyncio.timeout(self._budget), await self._follow(session) as response:
                status = response.status
                out.add(STATUS_CODE, status)
                expiry = self._cert_expiry(response)
                if expiry is not None:
                    out.add(TLS_EXPIRY, expiry)
                body = await self._read_body(response)
        except TimeoutError:
            out.add(UP, 0)
            waited = "response" if status is None else f"body (status {status})"
            raise CheckFailed(f"no complete {waited} within {self._budget:.3g}s") from None
        except aiohttp.ClientError as exc:
            out.add(UP, 0)
            raise CheckFailed(_client_failure(exc)) from None
        except CheckFailed:
            out.add(UP, 0)
            raise
        out.add(DURATION, time.perf_counter() - started)
        out.add(RESPONSE_SIZE, len(body))

        up = any(low <= status <= high for low, high in options.valid_status_codes)
        if not up:
            problems.add(f"status {status}, expected {self._expected_codes()}")
        if options.wants_json:
            doc = self._parse_json(body, problems)
            if doc is _INVALID:
                out.add(UP, 0)
                problems.raise_if_any()
            up = self._health_status(doc, problems) and up
            out.add(UP, 1 if up else 0)
            self._components(doc, out, problems)
            self._freshness(doc, out, problems)
            self._values(doc, out, problems)
        else:
            out.add(UP, 1 if up else 0)
        problems.raise_if_any()

    async def _follow(self, session: aiohttp.ClientSession) -> aiohttp.ClientResponse:
        """The final response, following redirects here rather than in aiohttp.

        aiohttp keeps every header but Authorization on a redirect to another origin; a
        configured ``X-Api-Key`` would reach whatever host a 302 names. Credentials are
        sent to the configured origin only; other hosts get the public headers.
        """
        from yarl import URL  # aiohttp's URL type

        options = self.options
        url = URL(options.url)
        origin = url.origin()
        method, data = options.method, self._body
        for hop in range(options.max_redirects + 1):
            home = url.origin() == origin
            response = await session.request(
                method,
                url,
                data=data,
                headers=self._headers if home else self._foreign_headers,
                allow_redirects=False,
                timeout=self._timeout,
                server_hostname=options.tls.server_name if home else None,
            )
            location = response.headers.get("Location")
            if not (options.follow_redirects and response.status in _REDIRECTS and location):
                return response
            response.release()
            if hop == options.max_redirects:
                raise CheckFailed("too many redirects")
            try:
                url = url.join(URL(location))
            except ValueError:
                raise CheckFailed(f"redirect to an invalid URL {_short(location)}") from None
            if url.scheme not in ("http", "https") or not url.host:
                raise CheckFailed(f"redirect to a URL that is not http(s) {_short(location)}")
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, data = ("HEAD" if method == "HEAD" else "GET"), None
        raise AssertionError("unreachable")  # the loop returns or raises

    def _cert_expiry(self, response: aiohttp.ClientResponse) -> float | None:
        if response.url.scheme != "https" or self._peer.der is None:
            return None
        try:
            return cert_not_after(self._peer.der)
        except ValueError:
            return None

    def _expected_codes(self) -> str:
        parts = []
        for low, high in self.options.valid_status_codes:
            if low == high:
                parts.append(str(low))
            elif high - low == 99 and low % 100 == 0:
                parts.append(f"{low // 100}xx")
            else:
                parts.append(f"{low}-{high}")
        return " or ".join(parts)

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.options.body_size_limit
        if response.content_length is not None and response.content_length > limit:
            raise CheckFailed(f"{_too_large(limit)} (Content-Length {response.content_length})")
        chunks = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise CheckFailed(_too_large(limit))
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _parse_json(body: bytes, problems: _Problems) -> Any:
        if not body.strip():
            problems.add("body is empty, expected JSON")
            return _INVALID
        try:
            return json.loads(body)
        except json.JSONDecodeError as exc:
            what = exc.msg.removesuffix(" at")  # "Unterminated string starting at"
            problems.add(f"body is not valid JSON: {what} at line {exc.lineno} column {exc.colno}")
        except UnicodeDecodeError:
            problems.add("body is not valid JSON: not UTF-8 text")
        except RecursionError:
            problems.add("body is not usable JSON: nested too deeply")
        except ValueError:
            # Python refuses integers of more than sys.get_int_max_str_digits() digits.
            problems.add(
                f"body is not usable JSON: a number has more than "
                f"{sys.get_int_max_str_digits()} digits"
            )
        return _INVALID

    def _health_status(self, doc: Any, problems: _Problems) -> bool:
        path = self.options.status_path
        if path is None:
            return True
        try:
            value = path.find(doc)
        except PathError as exc:
            problems.add(str(exc))
            return False
        normalized = _normalized(value)
        if normalized is None:
            problems.add(f"{path.text} is {json_type(value)}, expected a status such as ok")
            return False
        # The document's own verdict is data (http_probe_up 0), not a failed check: the
        # probe worked, and a component in error must page as that component, not as
        # "service down" (which inhibits the component pages).
        return normalized in self.options.status_ok

    def _elements(  # noqa: C901 - one branch per JSON element shape the http kind reads
        self,
        doc: Any,
        path: JsonPath,
        name_field: JsonPath | None,
        problems: _Problems,
        *,
        keys_name_objects: bool = False,
        missing_ok: bool = False,
    ) -> Iterator[tuple[str, str, Any]]:
        """(label, where, element) for each element of the list or object at ``path``.

        Elements of a list are named by ``name_field``; those of an object by their key,
        or by ``name_field`` when given (unless ``keys_name_objects``). Stops at
        ``max_items`` elements. With ``missing_ok``, an absent or null container is empty.
        """
        try:
            container = path.find(doc)
        except PathError as exc:
            if not (missing_ok and exc.missing):
                problems.add(str(exc))
            return
        if container is None and missing_ok:
            return
        prefix = "" if path.is_root else path.text
        entries: Iterator[tuple[str, Any, str | None]]  # (where, element, key label)
        if isinstance(container, dict):
            entries = ((f"{prefix}.{k}".lstrip("."), v, str(k)) for k, v in container.items())
            if keys_name_objects:
                name_field = None
        elif isinstance(container, list):
            if name_field is None:
                problems.add(f"{path.text} is a list: set item_field to name its elements")
                return
            entries = ((f"{prefix}[{i}]", v, None) for i, v in enumerate(container))
        else:
            problems.add(f"{path.text} is {json_type(container)}, expected a list or an object")
            return
        limit = self.options.max_items
        if len(container) > limit:
            problems.add(
                f"{path.text} has {len(container)} elements, more than max_items {limit}; "
                f"only the first {limit} are exported"
            )
        # Only the elements exported are named: a long list costs no more than max_items.
        for where, element, key in islice(entries, limit):
            label = key
            if name_field is not None:
                try:
                    name = name_field.find(element, where)
                except PathError as exc:
                    problems.add(str(exc))
                    continue
                if isinstance(name, bool) or not isinstance(name, str | int | float):
                    problems.add(f"{where}.{name_field.text} is {json_type(name)}, expected a name")
                    continue
                label = str(name)
            assert label is not None
            if len(label) > MAX_LABEL_LENGTH:
                # The target chooses these names: a 150 KB key must not become a label.
                problems.add(
                    f"{path.text}: an element's name has {len(label)} characters, more than "
                    f"{MAX_LABEL_LENGTH}; not exported"
                )
                continue
            yield label, where, element

    def _components(self, doc: Any, out: Sink, problems: _Problems) -> None:
        options = self.options.components
        if options is None:
            return
        seen: set[str] = set()
        elements = self._elements(
            doc, options.path, options.name_field, problems, keys_name_objects=True
        )
        for name, where, component in elements:
            if name in seen:
                problems.add(f'{where}: duplicate component name "{name}"')
                continue
            seen.add(name)
            if isinstance(component, dict):
                try:
                    status = options.status_field.find(component, where)
                except PathError as exc:
                    out.add(COMPONENT_UP, 0, component=name)
                    problems.add(str(exc))
                    continue
            else:
                status = component  # {"redis": "up"}: the value is the status
            normalized = _normalized(status)
            out.add(COMPONENT_UP, 1 if normalized in options.ok else 0, component=name)

    def _extracted(
        self, doc: Any, extract: Extract, problems: _Problems
    ) -> Iterator[tuple[str, str, Any]]:
        """(item label, where, value) for an entry: once, or per element with ``each``."""
        if extract.each is None:
            pairs: Iterator[tuple[str, str, Any]] = iter([(extract.item, "", doc)])
        else:
            pairs = self._elements(
                doc, extract.each, extract.item_field, problems, missing_ok=extract.optional
            )
        for item, where, element in pairs:
            try:
                value = extract.path.find(element, where)
            except PathError as exc:
                if not (extract.optional and exc.missing):
                    problems.add(str(exc))
                continue
            if value is None and extract.optional:
                continue
            shown = (
                extract.path.text
                if not where
                else (where if extract.path.is_root else f"{where}.{extract.path.text}")
            )
            yield item, shown, value

    def _freshness(self, doc: Any, out: Sink, problems: _Problems) -> None:
        seen: set[str] = set()
        for extract in self.options.freshness:
            for item, where, value in self._extracted(doc, extract, problems):
                try:
                    timestamp = to_unix_seconds(value)
                except ValueError as exc:
                    problems.add(f"{where}: {exc}")
                    continue
                if item in seen:
                    problems.add(f'{where}: freshness item "{item}" already exported')
                    continue
                seen.add(item)
                out.add(FRESHNESS, timestamp, item=item)

    def _values(self, doc: Any, out: Sink, problems: _Problems) -> None:
        seen: set[tuple[str, str]] = set()
        for extract in self.options.values:
            for item, where, value in self._extracted(doc, extract, problems):
                try:
                    number = json_number(value)
                except ValueError as exc:
                    problems.add(f"{where}: {exc}")
                    continue
                if (item, extract.field) in seen:
                    problems.add(
                        f'{where}: value item "{item}" field "{extract.field}" already exported'
                    )
                    continue
                seen.add((item, extract.field))
                out.add(JSON_VALUE, number, item=item, field=extract.field)


_INVALID: Any = object()

KIND = Kind(
    name="http",
    summary="HTTP(S) health endpoint: status, latency, TLS expiry, JSON status, "
    "components, freshness and values from the body.",
    parse=parse,
    probe=HttpProbe,
    families=(
        UP,
        STATUS_CODE,
        DURATION,
        RESPONSE_SIZE,
        TLS_EXPIRY,
        COMPONENT_UP,
        FRESHNESS,
        JSON_VALUE,
    ),
    target="url",
    alerts=(
        DefaultAlert(
            key="not_ok",
            name="NotOk",
            query="http_probe_up{$sel}",
            op="==",
            threshold=0,
            unit="bool",
            for_=120.0,
            severity="critical",
            summary="{{ $labels.check }} answers, but not OK (status, JSON status or a component)",
            description=(
                "The endpoint answered with a status outside the expected codes, or its "
                "JSON says it is unhealthy. The reason is on the exporter's status page."
            ),
            steps=(
                "curl the endpoint and read the status and body.",
                "Read the service's log around the first failure; restart it if it hangs.",
            ),
            reads="http_probe_up{$sel}",
            test=(TestInput("http_probe_up{$sel}", "gauge", "threshold + 1", "threshold"),),
        ),
        DefaultAlert(
            key="component_down",
            name="ComponentDown",
            query="http_component_up{$sel}",
            op="==",
            threshold=0,
            unit="bool",
            for_=120.0,
            severity="critical",
            summary="component {{ $labels.component }} of {{ $labels.check }} is not OK",
            description="The service's own health endpoint reports this component unhealthy.",
            steps=(
                "Check the component itself (its own process, connection or credentials).",
                "The service may recover by itself once the component is back; "
                "restart it if it does not.",
            ),
            reads="http_component_up{$sel}",
            test=(
                TestInput(
                    'http_component_up{$sel,component="c"}', "gauge", "threshold + 1", "threshold"
                ),
            ),
            labels=(("component", "c"),),
            scope="component",
        ),
        stale("freshness item", 3600.0),
        cert_expiring("http_probe_tls_cert_expiry_timestamp_seconds"),
        DefaultAlert(
            key="value",
            name="Value",
            query="http_json_value{$sel}",
            op=">",
            threshold=None,
            unit="count",
            for_=300.0,
            severity="warning",
            summary="{{ $labels.item }} {{ $labels.field }} of {{ $labels.check }} is {value} "
            "(limit {threshold})",
            description="A number the endpoint reports (the check's values) is past the "
            "limit set in the config.",
            steps=("Open the check's values in the config to see what the number counts.",),
            reads="http_json_value{$sel}",
            test=(
                TestInput(
                    'http_json_value{$sel,item="x",field="f"}',
                    "gauge",
                    "threshold",
                    "threshold + 1",
                ),
            ),
            labels=(("item", "x"), ("field", "f")),
            scope="item",
        ),
        dropped(
            "http_json_value{$sel}",
            key="value_drop",
            name="ValueDropped",
            threshold=None,
            labels=(("item", "x"), ("field", "f")),
            scope="item",
            summary="{{ $labels.item }} {{ $labels.field }} of {{ $labels.check }} is {value} "
            "of its largest of the last day (warn below {threshold})",
            description=(
                "A number the endpoint reports fell against its own recent past: a record "
                "count that should only grow (totalRecords) declined, so data was lost, "
                "pruned or replaced by a smaller fallback."
            ),
            steps=(
                "curl the endpoint and compare the number with the dashboard's last day.",
                "Read the writer's log for the run where it fell (a connector that returned "
                "fallback or partial data); rerun it when the source is back.",
            ),
        ),
    ),
    panels=(
        Panel("HTTP response time", 'http_probe_duration_seconds{check=~"$check"}', "seconds"),
        Panel(
            "Components OK", 'http_component_up{check=~"$check"}', "bool", "{{check}} {{component}}"
        ),
        Panel(
            "Freshness age",
            'time() - freshness_timestamp_seconds{check=~"$check"}',
            "seconds",
            "{{check}} {{item}}",
            thresholds="Stale",
        ),
    ),
)
