"""The shared HTTP layer: credentials pinned to their origin, HTTP and transport errors mapped."""

from __future__ import annotations

import email.utils
import socket
import time

import httpx
import pytest
from fixtures_local_hub import SAMPLE_REPO

from model_zoo.errors import (
    GatedRepoError,
    HubProtocolError,
    HubServerError,
    HubUnreachableError,
    NotOnWhiteListError,
    RateLimitedError,
    RepoNotFoundError,
)
from model_zoo.hubs.catalog import SOURCE_KEYS
from model_zoo.hubs.factory import adapter_for
from model_zoo.hubs.http import (
    HubContext,
    HubSession,
    build_client,
    parse_retry_after,
    redact,
    safe_url,
    same_origin,
    send,
    sha256_or_none,
    size_or_none,
)
from model_zoo.settings import load_settings
from model_zoo.testing.local_hub import LocalHub

TOKEN = "tok-SECRET-123"


def test_same_origin_compares_scheme_host_and_default_port() -> None:
    assert same_origin("https://hub.example/a", "https://HUB.example:443/b?x=1")
    assert not same_origin("https://hub.example/a", "http://hub.example/a")
    assert not same_origin("http://127.0.0.1:8000/", "http://127.0.0.1:8001/")
    assert not same_origin("https://hub.example/", "https://cdn.hub.example/")


def test_safe_url_drops_query_and_user_info() -> None:
    url = "https://user:pw@oss.example:8443/bucket/f.bin?Signature=abc&Expires=1#frag"
    assert safe_url(url) == "https://oss.example:8443/bucket/f.bin"


def test_redact_and_retry_after() -> None:
    assert redact(f"bad token {TOKEN}!", [None, TOKEN]) == "bad token ***!"
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 50 < (parse_retry_after(later) or 0) <= 61


def test_value_helpers() -> None:
    digest = "AB" * 32
    assert sha256_or_none(digest) == digest.lower()
    assert sha256_or_none('"' + "c" * 64 + '"') == "c" * 64
    assert sha256_or_none("a" * 40) is None
    assert sha256_or_none("z" * 64) is None
    assert sha256_or_none(None) is None
    assert size_or_none(5) == 5 and size_or_none("12") == 12
    assert size_or_none(-1) is None and size_or_none(True) is None and size_or_none("1e3") is None


def _redirecting(location: str) -> tuple[list[httpx.Request], httpx.Client]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/start":
            return httpx.Response(302, headers={"Location": location})
        return httpx.Response(200, content=b"bytes")

    return seen, build_client(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    "location",
    [
        "https://cdn.example/blob",  # another host (HF's LFS CDN)
        "http://hub.example/blob",  # same host, other scheme
        "https://hub.example:8443/blob",  # same host, other port
    ],
)
def test_credentials_are_dropped_when_a_redirect_leaves_the_origin(location: str) -> None:
    seen, client = _redirecting(location)
    with client:
        response = client.get(
            "https://hub.example/start",
            headers={"Authorization": f"Bearer {TOKEN}", "Cookie": f"m_session_id={TOKEN}"},
        )
    assert response.status_code == 200
    first, second = seen
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in second.headers
    assert "cookie" not in second.headers
    assert second.headers["user-agent"] == "model-zoo"


def test_credentials_stay_on_a_same_origin_redirect() -> None:
    seen, client = _redirecting("https://hub.example/elsewhere")
    with client:
        client.get("https://hub.example/start", headers={"Authorization": f"Bearer {TOKEN}"})
    assert seen[1].headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_chain_that_comes_back_to_the_origin_stays_stripped_after_leaving() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "hub.example" and request.url.path == "/start":
            return httpx.Response(302, headers={"Location": "https://evil.example/bounce"})
        if request.url.host == "evil.example":
            return httpx.Response(302, headers={"Location": "https://hub.example/final"})
        return httpx.Response(200)

    with build_client(transport=httpx.MockTransport(handler)) as client:
        client.get("https://hub.example/start", headers={"Authorization": f"Bearer {TOKEN}"})
    assert [r.url.host for r in seen] == ["hub.example", "evil.example", "hub.example"]
    assert all("authorization" not in r.headers for r in seen[1:])


def _ctx() -> HubContext:
    return HubContext("ModelScope", "https://hub.example", TOKEN, "MODELSCOPE_API_TOKEN")


def _status(code: int, headers: dict[str, str] | None = None, text: str = "") -> httpx.Response:
    request = httpx.Request("GET", "https://hub.example/api/x?token=" + TOKEN)
    return httpx.Response(code, headers=headers, text=text, request=request)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (404, RepoNotFoundError),
        (401, GatedRepoError),
        (403, GatedRepoError),
        (418, NotOnWhiteListError),
        (429, RateLimitedError),
        (500, HubServerError),
        (503, HubServerError),
        (400, HubProtocolError),
    ],
)
def test_status_codes_map_to_model_zoo_errors(code: int, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        _ctx().raise_for_status(_status(code, text=f"server says {TOKEN}"), repo_id="o/r")
    message = str(info.value)
    assert TOKEN not in message
    assert TOKEN not in repr(info.value.to_dict())  # type: ignore[attr-defined]


def test_gated_names_the_token_variable_and_rate_limit_carries_retry_after() -> None:
    with pytest.raises(GatedRepoError) as gated:
        _ctx().raise_for_status(_status(401), repo_id="o/r")
    assert gated.value.token_env == "MODELSCOPE_API_TOKEN"
    assert "MODELSCOPE_API_TOKEN" in str(gated.value)
    with pytest.raises(RateLimitedError) as limited:
        _ctx().raise_for_status(_status(429, {"Retry-After": "12"}), repo_id="o/r")
    assert limited.value.retry_after == 12.0
    assert "12 s" in str(limited.value)


def test_success_statuses_pass() -> None:
    _ctx().raise_for_status(_status(200), repo_id="o/r")
    _ctx().raise_for_status(_status(206), repo_id="o/r")


def test_transport_failures_are_unreachable_without_the_token() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused while sending {TOKEN}", request=request)

    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    for handler, reason in ((refuse, "ConnectError"), (stall, "ReadTimeout")):
        with build_client(transport=httpx.MockTransport(handler)) as client:
            with pytest.raises(HubUnreachableError) as info:
                send(_ctx(), client, "GET", "https://hub.example/api")
        assert reason in str(info.value)
        assert TOKEN not in str(info.value)
        assert info.value.endpoint == "https://hub.example"


def test_session_sends_credentials_only_to_its_own_origin_and_hides_them() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    session = HubSession(
        hub="Modelers",
        endpoint="https://hub.example/",
        token=TOKEN,
        token_env="OPENMIND_HUB_TOKEN",
        credentials={"Authorization": f"Bearer {TOKEN}"},
        client=build_client(transport=httpx.MockTransport(handler)),
    )
    session.fetch_json("GET", "https://hub.example/api", repo_id="o/r")
    session.fetch_json("GET", "https://other.example/api", repo_id="o/r")
    assert seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in seen[1].headers
    assert session.file_headers("https://other.example/f") == {}
    assert TOKEN not in repr(session) and TOKEN not in repr(session.ctx)
    assert session.endpoint == "https://hub.example"


def test_probe_measures_latency_and_maps_failures() -> None:
    def make(status: int) -> HubSession:
        client = build_client(transport=httpx.MockTransport(lambda r: httpx.Response(status)))
        return HubSession(
            hub="HF",
            endpoint="https://hub.example",
            token=None,
            token_env=None,
            credentials={},
            client=client,
        )

    assert make(200).probe() >= 0.0
    assert make(404).probe() >= 0.0  # an answer means reachable
    with pytest.raises(HubServerError):
        make(502).probe()
    with pytest.raises(RateLimitedError):
        make(429).probe()


# -------------------------------------------- mirror passwords in endpoints, and what servers said


PASSWORD = "mirror-s3cret-pw"


MIRROR_TOKEN = "hf_review_token_0123456789"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env_for(endpoint: str) -> dict[str, str]:
    from model_zoo.hubs.catalog import HUBS

    env = {info.endpoint_env: endpoint for info in HUBS.values()}
    for info in HUBS.values():
        env[info.token_envs[0]] = MIRROR_TOKEN
    return env


@pytest.mark.parametrize("source", SOURCE_KEYS)
def test_mirror_password_in_the_endpoint_stays_out_of_errors_and_reprs(source: str) -> None:
    endpoint = f"http://alice:{PASSWORD}@127.0.0.1:{_closed_port()}"
    adapter = adapter_for(source, load_settings(_env_for(endpoint)))
    assert PASSWORD not in repr(adapter)
    with pytest.raises(HubUnreachableError) as info:
        adapter.manifest("ns/repo")
    shown = str(info.value) + repr(info.value.fields)
    assert PASSWORD not in shown and MIRROR_TOKEN not in shown
    assert "127.0.0.1" in shown  # still says which endpoint failed


@pytest.mark.parametrize("source", SOURCE_KEYS)
def test_manifest_endpoint_recorded_without_the_mirror_password(
    source: str, local_hub: LocalHub
) -> None:
    endpoint = local_hub.url.replace("http://", f"http://alice:{PASSWORD}@")
    env = {k: endpoint for k in local_hub.env()}
    manifest = adapter_for(source, load_settings(env)).manifest(SAMPLE_REPO)
    assert manifest.files
    assert PASSWORD not in manifest.endpoint
    assert manifest.endpoint == local_hub.url


def test_safe_url_keeps_ipv6_brackets() -> None:
    assert safe_url("http://[::1]:8080/api?x=1") == "http://[::1]:8080/api"


NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad "
    "Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@pytest.mark.parametrize("source", ["modelscope", "modelers", "openxlab"])
@pytest.mark.parametrize(
    ("body", "ctype", "shown"),
    [
        (NGINX_502, "text/html", "502 Bad Gateway"),
        (
            '{"Code": 502, "Message": "upstream busy", "RequestId": "abc", "Success": false}',
            "application/json",
            "upstream busy",
        ),
    ],
)
def test_server_errors_quote_what_the_server_said_not_its_markup(
    source: str, body: str, ctype: str, shown: str, mock_hub
) -> None:
    import httpx

    from model_zoo.errors import HubServerError

    hub = mock_hub(lambda r: httpx.Response(502, text=body, headers={"content-type": ctype}))
    settings = load_settings(_env_for("http://hub.example"))
    with pytest.raises(HubServerError) as info:
        adapter_for(source, settings, client=hub.client).manifest("ns/repo")
    message = str(info.value)
    assert f"HTTP 502: {shown}." in message
    assert "<" not in message and "RequestId" not in message and MIRROR_TOKEN not in message
