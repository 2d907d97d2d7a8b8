"""Shared HTTP plumbing for the hub adapters: one client shape, one error mapping, no leaks.

Why one module: every hub needs the same three guarantees, and they are easy to get subtly
wrong per hub.

* Credentials never leave their origin. ``build_client`` installs a request hook that drops
  ``Authorization`` and ``Cookie`` from any hop whose origin (scheme, host, port) differs from
  the first hop's. httpx alone keeps ``Cookie`` across hosts and keeps ``Authorization`` on an
  http->https hop to the same host name; ModelScope's cookie token and HF's CDN redirects
  make both matter. The engine should download with a client from ``build_client`` too.
* HTTP failures become ``model_zoo.errors`` types (``raise_for_response``); transport failures
  become ``HubUnreachableError`` (``send``).
* Nothing logged or raised carries a token: URLs are logged without their query (presigned
  URLs hold signatures), and any text taken from a server passes through ``redact``.

httpx is imported here at module level; only the hub modules import this module, and they
are loaded lazily by ``factory.adapter_for``.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, NoReturn
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..errors import (
    GatedRepoError,
    HubProtocolError,
    HubServerError,
    HubUnreachableError,
    NotOnWhiteListError,
    RateLimitedError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from .base import Manifest, RemoteFile

log = logging.getLogger("model_zoo.hubs")

USER_AGENT = "model-zoo"
DEFAULT_TIMEOUT = 30.0
CREDENTIAL_HEADERS = ("authorization", "cookie")
_ORIGIN_KEY = "model_zoo_origin"


# ---------------------------------------------------------------- URLs and secrets


def origin(url: str | httpx.URL) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the default port filled in, for same-origin checks."""
    parts = urlsplit(str(url))
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def same_origin(a: str | httpx.URL, b: str | httpx.URL) -> bool:
    return origin(a) == origin(b)


def safe_url(url: str | httpx.URL) -> str:
    """The URL without query, fragment or user info: safe for logs and error messages."""
    parts = urlsplit(str(url))
    netloc = parts.hostname or ""
    if ":" in netloc:  # an IPv6 literal keeps its brackets
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def url_secrets(url: str) -> list[str]:
    """The user name and password a URL carries (``https://user:pw@mirror``), to redact."""
    parts = urlsplit(url)
    return [s for s in (parts.password, parts.username) if s]


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def headers_for(url: str, endpoint: str, credentials: Mapping[str, str]) -> dict[str, str]:
    """``credentials`` when ``url`` is on the hub's own origin, else nothing."""
    return dict(credentials) if credentials and same_origin(url, endpoint) else {}


# ---------------------------------------------------------------- client


def _pin_credentials_to_origin(request: httpx.Request) -> None:
    """Request hook: remember the first hop's origin; strip credentials on any other."""
    first = request.extensions.get(_ORIGIN_KEY)
    here = origin(request.url)
    if first is None:
        request.extensions[_ORIGIN_KEY] = here
    elif tuple(first) != here:
        for name in CREDENTIAL_HEADERS:
            request.headers.pop(name, None)
    log.debug("%s %s", request.method, safe_url(request.url))


def build_client(
    *,
    timeout: float = DEFAULT_TIMEOUT,
    transport: httpx.BaseTransport | None = None,
    follow_redirects: bool = True,
) -> httpx.Client:
    """An httpx client that follows redirects without carrying credentials across origins."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        follow_redirects=follow_redirects,
        transport=transport,
        headers={"User-Agent": USER_AGENT},
        event_hooks={"request": [_pin_credentials_to_origin]},
    )


# ---------------------------------------------------------------- error mapping


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HubContext:
    """What an adapter knows when it talks to its hub: names for errors, secrets to hide.

    Holds the token only to redact it; ``repr`` never shows it. ``endpoint`` is the display
    form: without the user name and password a mirror URL may carry.
    """

    def __init__(
        self,
        hub: str,
        endpoint: str,
        token: str | None,
        token_env: str | None,
        *,
        advice: str | None = None,
        web_url: str | None = None,
    ) -> None:
        self.hub = hub
        self.endpoint = safe_url(endpoint)
        self._secrets = [token, *url_secrets(endpoint)]
        self.token_env = token_env
        self.advice = advice  # what to do when refused, where it is not "set TOKEN_ENV"
        self.web_url = web_url  # format string with {repo_id}

    def __repr__(self) -> str:
        return f"HubContext(hub={self.hub!r}, endpoint={self.endpoint!r})"

    def add_secret(self, secret: str) -> None:
        """Also hide ``secret`` (a token minted during the session) from messages."""
        self._secrets.append(secret)

    def gated(self, repo_id: str, status: int | None) -> GatedRepoError:
        return GatedRepoError(
            self.hub, repo_id, token_env=self.token_env, status=status, advice=self.advice
        )

    def clean(self, text: str, limit: int = 200) -> str:
        """Server-provided text, shortened and with the token removed."""
        text = " ".join(str(text).split())
        return redact(text, self._secrets)[:limit]

    # ---- raising

    def unreachable(self, exc: BaseException) -> HubUnreachableError:
        reason = type(exc).__name__
        detail = self.clean(str(exc), 120)
        if detail:
            reason += f": {detail}"
        return HubUnreachableError(self.hub, self.endpoint, reason=reason)

    def protocol(self, detail: str, url: str | httpx.URL | None = None) -> HubProtocolError:
        return HubProtocolError(self.hub, self.clean(detail), url=safe_url(url) if url else None)

    def raise_for_status(
        self,
        response: httpx.Response,
        *,
        repo_id: str,
        not_found: Callable[[httpx.Response], NoReturn] | None = None,
    ) -> None:
        """Map an HTTP error status to a model-zoo error; return quietly on success.

        ``not_found`` decides what a 404 means (repository or revision) when the caller can
        tell; by default a 404 is a missing repository.
        """
        status = response.status_code
        if status < 400:
            return
        url = safe_url(response.request.url) if response.request else None
        if status == 404:
            if not_found is not None:
                not_found(response)
            raise RepoNotFoundError(self.hub, repo_id, url=url)
        if status == 418:  # Modelers: "not on the white list", which no token changes
            web = self.web_url.format(repo_id=repo_id) if self.web_url else None
            raise NotOnWhiteListError(self.hub, repo_id, web_url=web)
        if status in (401, 403, 451):
            raise self.gated(repo_id, status)
        if status == 429:
            raise RateLimitedError(
                self.hub,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                url=url,
            )
        if status >= 500:
            raise HubServerError(self.hub, status, url=url, detail=self._body_hint(response))
        raise HubProtocolError(
            self.hub, f"HTTP {status} {self._body_hint(response)}".strip(), url=url
        )

    def revision_missing(self, repo_id: str, revision: str) -> NoReturn:
        raise RevisionNotFoundError(self.hub, repo_id, revision)

    def _body_hint(self, response: httpx.Response) -> str:
        """What the server said, briefly: a JSON error's message, an HTML page's title."""
        try:
            text = response.text
        except (httpx.HTTPError, UnicodeDecodeError):
            return ""
        return self.clean(_error_text(text), 160)


_MESSAGE_KEYS = ("error", "message", "Message", "msg", "detail")


def _error_text(body: str) -> str:
    """The human part of an error body: the hubs' JSON message fields, or an HTML title."""
    stripped = body.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            return stripped
        if isinstance(data, dict):
            for key in _MESSAGE_KEYS:
                if isinstance(data.get(key), str) and data[key].strip():
                    return data[key]
        return stripped
    if stripped[:1] == "<":
        title = re.search(r"<title[^>]*>(.*?)</title>", stripped, re.IGNORECASE | re.DOTALL)
        return title.group(1).strip() if title else "an HTML page"
    return stripped


def send(
    ctx: HubContext,
    client: httpx.Client,
    method: str,
    url: str,
    **kwargs: Any,
) -> httpx.Response:
    """One request; transport failures become HubUnreachableError (with the token redacted)."""
    try:
        return client.request(method, url, **kwargs)
    except httpx.TooManyRedirects:
        raise ctx.protocol("too many redirects", url) from None
    except httpx.HTTPError as exc:  # connect/read errors, timeouts, proxies, bad URLs
        raise ctx.unreachable(exc) from None


def json_body(ctx: HubContext, response: httpx.Response) -> Any:
    """The decoded JSON body, or HubProtocolError when the hub answered something else."""
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        raise ctx.protocol("response is not JSON", response.request.url) from None


def probe_endpoint(ctx: HubContext, client: httpx.Client, url: str, timeout: float) -> float:
    """Latency of one HEAD request; any answer below 500 (except 429) counts as reachable."""
    start = time.perf_counter()
    response = send(ctx, client, "HEAD", url, timeout=timeout, follow_redirects=False)
    elapsed = time.perf_counter() - start
    if response.status_code == 429:
        raise RateLimitedError(
            ctx.hub,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            url=safe_url(url),
        )
    if response.status_code >= 500:
        raise HubServerError(ctx.hub, response.status_code, url=safe_url(url))
    return elapsed


class HubSession:
    """One hub's endpoint, credentials and client, with requests that map their own errors.

    ``credentials`` are the headers that authenticate to this hub; they are attached only to
    URLs on the endpoint's origin. The session never shows them in its repr.
    """

    def __init__(
        self,
        *,
        hub: str,
        endpoint: str,
        token: str | None,
        token_env: str | None,
        credentials: Mapping[str, str],
        client: httpx.Client | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        advice: str | None = None,
        web_url: str | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.ctx = HubContext(hub, self.endpoint, token, token_env, advice=advice, web_url=web_url)
        self._client = client
        self._timeout = timeout
        self._credentials = dict(credentials)
        self._auth: Callable[[], Mapping[str, str]] | None = None

    def set_auth(self, auth: Callable[[], Mapping[str, str]]) -> None:
        """Credentials computed per request (short-lived tokens), instead of fixed ones."""
        self._auth = auth

    @property
    def client(self) -> httpx.Client:
        """Built on first use: an adapter that only lists through huggingface_hub never needs it,
        and building one loads the CA bundle (about 50 ms), even for an http:// endpoint."""
        if self._client is None:
            self._client = build_client(timeout=self._timeout)
        return self._client

    def __repr__(self) -> str:
        return f"HubSession(hub={self.ctx.hub!r}, endpoint={self.ctx.endpoint!r})"

    def file_headers(self, url: str) -> dict[str, str]:
        """Headers to fetch ``url``: the credentials when it is on this hub, else none."""
        if self._auth is not None:
            return dict(self._auth()) if same_origin(url, self.endpoint) else {}
        return headers_for(url, self.endpoint, self._credentials)

    def request(
        self,
        method: str,
        url: str,
        *,
        repo_id: str,
        not_found: Callable[[httpx.Response], NoReturn] | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        merged = {**self.file_headers(url), **(headers or {})}
        response = send(self.ctx, self.client, method, url, headers=merged, **kwargs)
        self.ctx.raise_for_status(response, repo_id=repo_id, not_found=not_found)
        return response

    def fetch_json(self, method: str, url: str, *, repo_id: str, **kwargs: Any) -> Any:
        return json_body(self.ctx, self.request(method, url, repo_id=repo_id, **kwargs))

    def json_if_ok(self, url: str, **kwargs: Any) -> Any | None:
        """The JSON body of a 2xx answer, else None: for "does this exist?" follow-ups."""
        response = send(self.ctx, self.client, "GET", url, headers=self.file_headers(url), **kwargs)
        if not response.is_success:
            return None
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError):
            return None

    def probe(self, timeout: float = 2.0) -> float:
        return probe_endpoint(self.ctx, self.client, self.endpoint + "/", timeout)


# ---------------------------------------------------------------- listing helpers

_HEX = frozenset("0123456789abcdef")


def sha256_or_none(value: object) -> str | None:
    """``value`` lower-cased when it is a 64-hex digest (what sha256 looks like), else None."""
    if not isinstance(value, str):
        return None
    value = value.strip().strip('"').lower()
    return value if len(value) == 64 and set(value) <= _HEX else None


def git_blob_or_none(value: object) -> str | None:
    """``value`` lower-cased when it is a 40-hex git object id (a blob's sha1), else None."""
    if not isinstance(value, str):
        return None
    value = value.strip().strip('"').lower()
    return value if len(value) == 40 and set(value) <= _HEX else None


def size_or_none(value: object) -> int | None:
    """A non-negative integer size from a JSON value (int or digit string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


# ---------------------------------------------------------------- adapter base


class AdapterBase:
    """What every hub adapter shares: source key, session, probe, a token-free repr.

    Subclasses set ``default_source`` and, when the hub does not take ``Authorization:
    Bearer``, override ``credentials``.
    """

    default_source: ClassVar[str]

    def __init__(
        self,
        endpoint: str,
        token: str | None = None,
        *,
        client: httpx.Client | None = None,
        source: str | None = None,
    ) -> None:
        from .catalog import hub_info

        info = hub_info(source or self.default_source)
        self.source = info.key
        self.hf_format = info.hf_format
        self.session = HubSession(
            hub=info.title,
            endpoint=endpoint,
            token=token,
            token_env=info.token_envs[0] if info.token_envs else None,
            credentials=self.credentials(token) if token else {},
            client=client,
            advice=info.credentials_advice,
            web_url=info.web_url,
        )

    @staticmethod
    def credentials(token: str) -> dict[str, str]:
        """Headers that carry ``token`` to this hub."""
        return {"Authorization": f"Bearer {token}"}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(source={self.source!r}, endpoint={self.session.ctx.endpoint!r})"
        )

    def probe(self, timeout: float = 2.0) -> float:
        return self.session.probe(timeout)

    def build_manifest(
        self,
        repo_id: str,
        revision: str,
        commit: str | None,
        files: Iterable[RemoteFile],
        *,
        pinned: bool = True,
    ) -> Manifest:
        """A Manifest of ``files``, keeping the first entry for a path listed twice."""
        unique: dict[str, RemoteFile] = {}
        for remote in files:
            unique.setdefault(remote.path, remote)
        return Manifest(
            source=self.source,
            repo_id=repo_id,
            revision=revision,
            commit=commit,
            endpoint=self.session.ctx.endpoint,  # recorded in the store: no credentials
            files=tuple(unique.values()),
            pinned=pinned,
        )
