"""OpenXLab credentials: the access key pair its users already have, turned into short-lived JWTs.

OpenXLab does not take a long-lived token. Its users hold an access key (AK) and a secret key
(SK), and the official client (``openxlab`` 0.1.3: ``xlab/handler/user_token.py``,
``xlab/clients/auth_client.py``) trades them for a JWT at the SSO service under the API
endpoint, ``{endpoint}/sso-be/api/v1/open/``:

1. ``POST auth {"ak"}`` -> ``{"nonce", "algorithm"}`` (``HmacSHA256``);
2. ``POST getJwt {"ak", "d"}`` with ``d = base64(HMAC(sk, nonce))`` -> ``{"jwt", "expiration",
   "sso_uid", "refresh_token", "refresh_expiration"}``, times as ``YYYY-MM-DD HH:MM:SS`` in China
   Standard Time;
3. from 30 s before ``expiration``: ``POST refreshJwt {"ak", "refresh_token"}`` -> the same
   shape; once the refresh token has expired as well, back to 1.

Answers are ``{msgCode, msg, data: {msgCode, msg, data}}``; ``"10000"`` at both levels is
success. The JWT goes bare in ``Authorization``.

The key pair is read where the official client keeps it: ``OPENXLAB_AK`` and ``OPENXLAB_SK``, or
``~/.openxlab/config.json`` (``{"ak", "sk"}``, written by ``openxlab login``). model-zoo prefers
the variables when both are there (the official client prefers the file). ``OPENXLAB_TOKEN``, a
JWT, overrides both. Minted tokens live in memory only: the client's ``~/.openxlab/token.json``
is neither read nor written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, CredentialsRejectedError

AK_ENV = "OPENXLAB_AK"
SK_ENV = "OPENXLAB_SK"
SSO_PATH = "/sso-be/api/v1/open/"
CONFIG_FILE = Path(".openxlab") / "config.json"  # under the home directory, as the client has it
REFRESH_MARGIN = 30.0  # seconds before expiration at which a JWT is renewed (as the client does)
OK = "10000"
CST_OFFSET_HOURS = 8  # the SSO service writes times in China Standard Time
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# hmac, base64, json and datetime are imported where used: settings imports this module, and
# `model-zoo list` must start fast.


@dataclass(frozen=True)
class AccessKey:
    """An OpenXLab access key pair and where it was read (for messages; never the secret)."""

    ak: str
    sk: str = field(repr=False)
    origin: str  # "OPENXLAB_AK/OPENXLAB_SK" or the config file's path


def access_key_from(env: Mapping[str, str]) -> AccessKey | None:
    """The key pair from the environment, else from ``~/.openxlab/config.json``; None when
    neither has one. Raises ConfigError for a half-set pair or an unreadable config file."""
    ak, sk = (env.get(AK_ENV) or "").strip(), (env.get(SK_ENV) or "").strip()
    if ak and sk:
        return AccessKey(ak, sk, f"{AK_ENV}/{SK_ENV}")
    if ak or sk:
        missing = SK_ENV if ak else AK_ENV
        raise ConfigError(
            f"{AK_ENV if ak else SK_ENV} is set but {missing} is not: OpenXLab needs "
            "both halves of the access key pair",
            setting=missing,
        )
    home = env.get("HOME")
    path = (Path(home) if home else Path.home()) / CONFIG_FILE
    if not path.is_file():
        return None
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        ak, sk = str(data["ak"]).strip(), str(data["sk"]).strip()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f'{path} is not the OpenXLab client\'s config (JSON with "ak" and "sk"): '
            f"{type(exc).__name__}; fix it with `openxlab config`, or set {AK_ENV} and "
            f"{SK_ENV}",
            setting=str(path),
        ) from None
    if not (ak and sk):
        raise ConfigError(
            f"{path} has an empty ak or sk; fix it with `openxlab config`", setting=str(path)
        )
    return AccessKey(ak, sk, str(path))


def sign(sk: str, nonce: str, algorithm: str) -> str:
    """``d``: the nonce signed with the secret key, by the algorithm the SSO service names."""
    import base64
    import hmac

    name = algorithm[4:] if algorithm.startswith("Hmac") else algorithm
    try:
        digest = hmac.new(sk.encode(), nonce.encode(), name.lower()).digest()
    except ValueError:
        raise ValueError(f"unsupported signing algorithm {algorithm!r}") from None
    return base64.b64encode(digest).decode()


def parse_time(value: object) -> float:
    """Seconds since the epoch of a ``YYYY-MM-DD HH:MM:SS`` China Standard Time stamp."""
    from datetime import datetime, timedelta, timezone

    cst = timezone(timedelta(hours=CST_OFFSET_HOURS))
    return datetime.strptime(str(value), _TIME_FORMAT).replace(tzinfo=cst).timestamp()


@dataclass
class _Token:
    jwt: str = field(repr=False)
    expires: float
    refresh_token: str = field(repr=False)
    refresh_expires: float


Post = Callable[[str, dict[str, Any]], Any]  # (url, JSON body) -> decoded JSON answer


class JwtSource:
    """The current JWT for one access key, minted and renewed on demand; thread-safe.

    ``post`` sends one JSON POST and returns the decoded answer (the adapter's session, so
    transport failures and HTTP errors map like every other hub request). ``on_token`` is told
    every new JWT, so that error messages can redact it.
    """

    def __init__(
        self,
        key: AccessKey,
        endpoint: str,
        post: Post,
        *,
        hub: str = "OpenXLab",
        on_token: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.sso = endpoint.rstrip("/") + SSO_PATH
        self._post = post
        self._hub = hub
        self._on_token = on_token
        self._clock = clock
        self._token: _Token | None = None
        self._lock = threading.Lock()
        self.minted = 0
        self.refreshed = 0

    def __repr__(self) -> str:
        return f"JwtSource(ak={self.key.ak!r}, from={self.key.origin!r})"

    def jwt(self) -> str:
        """A JWT valid for at least ``REFRESH_MARGIN`` more seconds."""
        with self._lock:
            now = self._clock()
            token = self._token
            if token is None or token.expires - REFRESH_MARGIN <= now:
                if token is not None and token.refresh_expires > now:
                    token = self._refresh(token)
                else:
                    token = self._mint()
                self._token = token
                if self._on_token is not None:
                    self._on_token(token.jwt)
            return token.jwt

    def invalidate(self) -> None:
        """Forget the current JWT (the hub refused it): the next ``jwt()`` mints a new one."""
        with self._lock:
            self._token = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": self.jwt()}

    # ---------------------------------------------------------------- the exchange

    def _mint(self) -> _Token:
        challenge = self._call("auth", {"ak": self.key.ak})
        try:
            d = sign(self.key.sk, str(challenge["nonce"]), str(challenge["algorithm"]))
        except (KeyError, ValueError) as exc:
            raise self._refused(f"unusable challenge ({exc})") from None
        self.minted += 1
        return self._token_from(self._call("getJwt", {"ak": self.key.ak, "d": d}))

    def _refresh(self, old: _Token) -> _Token:
        try:
            answer = self._call(
                "refreshJwt", {"ak": self.key.ak, "refresh_token": old.refresh_token}
            )
        except CredentialsRejectedError:
            return self._mint()  # the refresh token was revoked: start over with the key pair
        self.refreshed += 1
        return self._token_from(answer)

    def _call(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self._post(self.sso + name, body)
        for _ in range(2):  # two envelopes, each with its own msgCode
            if not isinstance(answer, dict):
                raise self._refused(f"{name}: the answer is not a {{msgCode, data}} object")
            if str(answer.get("msgCode")) != OK:
                raise self._refused(
                    f"{name}: {answer.get('msg') or 'msgCode ' + str(answer.get('msgCode'))}"
                )
            answer = answer.get("data")
        if not isinstance(answer, dict):
            raise self._refused(f"{name}: the answer has no data")
        return answer

    def _token_from(self, data: dict[str, Any]) -> _Token:
        try:
            return _Token(
                str(data["jwt"]),
                parse_time(data["expiration"]),
                str(data["refresh_token"]),
                parse_time(data["refresh_expiration"]),
            )
        except (KeyError, ValueError) as exc:
            raise self._refused(f"unusable token answer ({type(exc).__name__}: {exc})") from None

    def _refused(self, detail: str) -> CredentialsRejectedError:
        return CredentialsRejectedError(self._hub, self.key.origin, detail)
