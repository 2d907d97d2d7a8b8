"""OpenXLab's access key pair: read where its client keeps it, traded for JWTs, renewed in time.

The local hub plays the SSO service (``model_zoo.mirror.openxlab_sso``); the official
``openxlab`` client mints through it too, which is what keeps that service honest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fixtures_clients import RunClient
from fixtures_pull import MODEL

from model_zoo.errors import ConfigError, CredentialsRejectedError, GatedRepoError
from model_zoo.hubs.factory import adapter_for
from model_zoo.hubs.openxlab_auth import AccessKey, JwtSource, access_key_from, parse_time, sign
from model_zoo.mirror.openxlab_sso import SsoService, cst_time
from model_zoo.settings import load_settings
from model_zoo.testing.hub_repos import write_repo
from model_zoo.testing.local_hub import LocalHub

AK, SK = "ak-model-zoo-test", "sk-very-secret-value"
REPO = "OpenLMLab/gated-chat"
FILES: dict[str, bytes | str | int] = {
    "config.json": '{"model_type": "internlm2"}\n',
    "w/model.bin": 70_001,
}


@pytest.fixture
def gated_hub(tmp_path: Path) -> LocalHub:
    write_repo(tmp_path / "root", REPO, FILES)
    hub = LocalHub(tmp_path / "root", openxlab_keys={AK: SK}, tokens={REPO: AK})
    hub.start()
    yield hub
    hub.stop()


KEY = AccessKey(AK, SK, "test")


def keyed_adapter(hub: LocalHub, key: AccessKey = KEY):  # type: ignore[no-untyped-def]
    from model_zoo.hubs.openxlab import OpenXLabAdapter

    adapter = OpenXLabAdapter(hub.url, None)
    adapter.use_access_key(key)
    return adapter


# ---------------------------------------------------------------- where the key pair comes from


def test_key_pair_from_the_variables(tmp_path: Path) -> None:
    key = access_key_from({"OPENXLAB_AK": " a ", "OPENXLAB_SK": "s", "HOME": str(tmp_path)})
    assert key == AccessKey("a", "s", "OPENXLAB_AK/OPENXLAB_SK")
    assert "s" not in repr(key).replace("origin", "").replace("AccessKey", "").replace("_SK", "")


def test_key_pair_from_the_clients_config_file_and_the_variables_win(tmp_path: Path) -> None:
    (tmp_path / ".openxlab").mkdir()
    (tmp_path / ".openxlab" / "config.json").write_text(
        json.dumps({"ak": "file-ak", "sk": "file-sk"})
    )
    from_file = access_key_from({"HOME": str(tmp_path)})
    assert from_file is not None and (from_file.ak, from_file.sk) == ("file-ak", "file-sk")
    assert from_file.origin == str(tmp_path / ".openxlab" / "config.json")
    both = access_key_from(
        {"HOME": str(tmp_path), "OPENXLAB_AK": "env-ak", "OPENXLAB_SK": "env-sk"}
    )
    assert both is not None and both.ak == "env-ak"
    assert access_key_from({"HOME": str(tmp_path / "nobody")}) is None


@pytest.mark.parametrize(
    ("env", "content", "says"),
    [
        ({"OPENXLAB_AK": "a"}, None, "OPENXLAB_SK is not"),
        ({"OPENXLAB_SK": "s"}, None, "OPENXLAB_AK is not"),
        ({}, "{not json", "openxlab config"),
        ({}, '{"ak": "a"}', "openxlab config"),
        ({}, '{"ak": "", "sk": "s"}', "empty"),
    ],
)
def test_a_broken_key_pair_is_a_config_error_that_says_what_to_fix(
    tmp_path: Path, env: dict[str, str], content: str | None, says: str
) -> None:
    if content is not None:
        (tmp_path / ".openxlab").mkdir()
        (tmp_path / ".openxlab" / "config.json").write_text(content)
    with pytest.raises(ConfigError) as info:
        access_key_from({"HOME": str(tmp_path), **env})
    assert says in info.value.message


def test_a_broken_config_file_waits_until_openxlab_is_used(tmp_path: Path) -> None:
    (tmp_path / ".openxlab").mkdir()
    (tmp_path / ".openxlab" / "config.json").write_text("{")
    settings = load_settings(
        {"HOME": str(tmp_path), "MODEL_ZOO_CONFIG": str(tmp_path / "none.toml")}
    )
    adapter_for("hf", settings)  # other hubs do not care
    with pytest.raises(ConfigError):
        adapter_for("openxlab", settings)


# ---------------------------------------------------------------- the exchange


def test_the_signature_is_the_clients_hmac_of_the_nonce() -> None:
    # openxlab 0.1.3 calculate_d: base64(HMAC(sk, nonce, algorithm minus "Hmac"))
    import base64
    import hashlib
    import hmac

    want = base64.b64encode(hmac.new(b"sk", b"n0nce", hashlib.sha256).digest()).decode()
    assert sign("sk", "n0nce", "HmacSHA256") == want
    sha1 = base64.b64encode(hmac.new(b"sk", b"n0nce", hashlib.sha1).digest()).decode()
    assert sign("sk", "n0nce", "HmacSHA1") == sha1
    with pytest.raises(ValueError):
        sign("sk", "n", "HmacNOPE")


def test_times_are_china_standard_time() -> None:
    assert parse_time("2026-01-01 08:00:00") == 1767225600.0  # 00:00 UTC
    assert parse_time(cst_time(1767225600.5)) == 1767225600.0


def test_a_gated_repository_lists_with_a_minted_jwt(gated_hub: LocalHub) -> None:
    adapter = keyed_adapter(gated_hub)
    manifest = adapter.manifest(REPO)
    assert {f.path for f in manifest.files} == set(FILES)
    assert gated_hub.sso.minted == 1
    adapter.manifest(REPO)
    assert (
        gated_hub.sso.minted == 1 and gated_hub.sso.refreshed == 0
    )  # the JWT is reused while valid
    listings = [r for r in gated_hub.stats.requests if r.url.endswith("getFileDownloadUrl")]
    assert listings and all(r.authorization and r.authorization.count(".") == 2 for r in listings)
    assert all(
        SK not in (r.authorization or "") and AK not in (r.authorization or "") for r in listings
    )


def test_a_jwt_near_its_expiry_is_refreshed_and_an_expired_refresh_token_mints_again(
    gated_hub: LocalHub,
) -> None:
    adapter = keyed_adapter(gated_hub)
    gated_hub.sso.jwt_ttl = 20  # inside the client's 30 s margin: every use renews it
    adapter.manifest(REPO)
    adapter.manifest(REPO)
    assert (gated_hub.sso.minted, gated_hub.sso.refreshed) == (1, 1)
    gated_hub.sso.refresh_ttl = 0  # refresh tokens now expire at once
    adapter.manifest(REPO)  # the refresh token from the last answer is still valid
    adapter.manifest(REPO)  # this one is not: mint from the key pair again
    assert (gated_hub.sso.minted, gated_hub.sso.refreshed) == (2, 2)


def test_a_jwt_the_hub_no_longer_takes_is_replaced_once(gated_hub: LocalHub) -> None:
    adapter = keyed_adapter(gated_hub)
    adapter.manifest(REPO)
    gated_hub.sso = SsoService()  # the hub forgot every token (revoked, restarted)
    gated_hub.sso.add_key(AK, SK)
    assert {f.path for f in adapter.manifest(REPO).files} == set(FILES)
    assert gated_hub.sso.minted == 1


def test_a_wrong_secret_key_is_refused_by_name_without_the_secret(gated_hub: LocalHub) -> None:
    adapter = keyed_adapter(gated_hub, AccessKey(AK, "wrong-secret", "OPENXLAB_AK/OPENXLAB_SK"))
    with pytest.raises(CredentialsRejectedError) as info:
        adapter.manifest(REPO)
    assert (
        "OPENXLAB_AK/OPENXLAB_SK" in info.value.message and "wrong-secret" not in info.value.message
    )
    assert info.value.exit_code == 4


def test_an_unknown_access_key_is_refused(gated_hub: LocalHub) -> None:
    with pytest.raises(CredentialsRejectedError, match="access key does not exist"):
        keyed_adapter(gated_hub, AccessKey("nobody", SK, "x")).manifest(REPO)


def test_without_credentials_the_advice_names_the_key_pair(gated_hub: LocalHub) -> None:
    from model_zoo.hubs.openxlab import OpenXLabAdapter

    with pytest.raises(GatedRepoError) as info:
        OpenXLabAdapter(gated_hub.url, None).manifest(REPO)
    assert "OPENXLAB_AK and OPENXLAB_SK" in info.value.message


def test_openxlab_token_overrides_the_key_pair(
    gated_hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENXLAB_ENDPOINT", gated_hub.url)
    monkeypatch.setenv("OPENXLAB_AK", AK)
    monkeypatch.setenv("OPENXLAB_SK", SK)
    monkeypatch.setenv(
        "OPENXLAB_TOKEN", AK
    )  # the hub takes the gate value itself as a static token
    adapter_for("openxlab").manifest(REPO)
    assert gated_hub.sso.minted == 0


def test_the_source_renews_by_clock_without_calling_the_hub_in_between() -> None:
    calls: list[str] = []
    now = [1_000_000.0]
    service = SsoService(jwt_ttl=100, refresh_ttl=1000)
    service.add_key(AK, SK)

    def post(url: str, body: dict) -> dict:
        name = url.rsplit("/", 1)[1]
        calls.append(name)
        data = {"auth": service.auth, "getJwt": service.get_jwt, "refreshJwt": service.refresh_jwt}[
            name
        ](body)
        return {
            "msgCode": "10000",
            "msg": "ok",
            "data": {"msgCode": "10000", "msg": "ok", "data": data},
        }

    source = JwtSource(AccessKey(AK, SK, "t"), "https://x/api/v1", post, clock=lambda: now[0])
    first = source.jwt()
    assert calls == ["auth", "getJwt"]
    import time

    now[0] = time.time() + 50  # 50 s later: still more than 30 s left
    assert source.jwt() == first and calls == ["auth", "getJwt"]
    now[0] = time.time() + 75  # 25 s left: renew
    assert source.jwt() != first and calls[-1] == "refreshJwt"


# ---------------------------------------------------------------- end to end


def test_pull_from_openxlab_with_the_key_pair(
    own_hub,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    import model_zoo

    hub, _root = own_hub(openxlab_keys={AK: SK})
    hub.gate("OpenLMLab/internlm2_5-1_8b-chat", AK)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".openxlab").mkdir()
    (tmp_path / ".openxlab" / "config.json").write_text(json.dumps({"ak": AK, "sk": SK}))
    path = model_zoo.pull(MODEL, source="openxlab", local_dir=tmp_path / "out")
    assert (path / "config.json").is_file()
    assert hub.sso.minted == 1


def test_the_official_client_mints_through_the_local_hub_and_downloads(
    gated_hub: LocalHub, tmp_path: Path, run_client: RunClient
) -> None:
    out = tmp_path / "xlab"
    result = run_client(
        "openxlab",
        {"repo": REPO, "endpoint": gated_hub.url, "local_dir": str(out), "precreate": ["w"]},
        env={"OPENXLAB_AK": AK, "OPENXLAB_SK": SK},
    )
    assert result["ok"], result.get("trace") or result
    assert result["token_file"]  # it stored the JWT it minted, as it does against the real hub
    assert gated_hub.sso.minted == 1
    for rel in FILES:
        assert (out / rel).read_bytes() == (gated_hub.store.repo_dir(REPO) / rel).read_bytes()


def test_the_official_client_without_keys_is_refused(
    gated_hub: LocalHub, tmp_path: Path, run_client: RunClient
) -> None:
    result = run_client(
        "openxlab", {"repo": REPO, "endpoint": gated_hub.url, "local_dir": str(tmp_path / "x")}
    )
    assert not result["ok"]
    assert not os.path.exists(tmp_path / "x" / "config.json")
