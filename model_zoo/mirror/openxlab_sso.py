"""The OpenXLab SSO exchange, server side: access key pairs in, short-lived JWTs out.

What the official ``openxlab`` client (0.1.3) asks of ``{endpoint}/sso-be/api/v1/open/``
(``xlab/clients/auth_client.py``, ``xlab/handler/user_token.py``), all POST with JSON bodies and
answers wrapped twice in ``{msgCode, msg, data}``:

* ``auth`` ``{"ak"}`` -> ``{"nonce", "algorithm"}``: a fresh challenge for that access key.
* ``getJwt`` ``{"ak", "d"}`` with ``d = base64(HMAC-SHA256(key=sk, msg=nonce))`` ->
  ``{"jwt", "expiration", "sso_uid", "refresh_token", "refresh_expiration"}``. The client builds
  its token object with exactly these keys, so the answer has no others; times are
  ``YYYY-MM-DD HH:MM:SS`` in China Standard Time.
* ``refreshJwt`` ``{"ak", "refresh_token"}`` -> the same shape, a new JWT.

The local hub uses this to gate OpenXLab repositories by access key: a JWT minted here for an
access key opens the repositories gated with that key until it expires. Tests shorten the
lifetimes to see clients refresh.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

ALGORITHM = "HmacSHA256"
CST = timezone(timedelta(hours=8))
OK = "10000"


class SsoRefused(Exception):
    """A request the SSO service refuses; ``code`` is the msgCode it answers with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class JwtExpired(Exception):
    """A JWT this service issued, past its expiration."""


def cst_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=CST).strftime("%Y-%m-%d %H:%M:%S")


def sign(sk: str, nonce: str) -> str:
    """The ``d`` of getJwt: what a client proves it holds ``sk`` with."""
    return base64.b64encode(
        hmac.new(sk.strip().encode(), nonce.encode(), hashlib.sha256).digest()
    ).decode()


@dataclass
class _Issued:
    ak: str
    expires: float


class SsoService:
    """Access keys, challenges and issued tokens of one local hub; thread-safe."""

    def __init__(self, *, jwt_ttl: float = 3600.0, refresh_ttl: float = 7 * 86400.0) -> None:
        self.jwt_ttl = jwt_ttl
        self.refresh_ttl = refresh_ttl
        self._keys: dict[str, str] = {}
        self._nonces: dict[str, str] = {}
        self._jwts: dict[str, _Issued] = {}
        self._refresh: dict[str, _Issued] = {}
        self._lock = threading.Lock()
        self.minted = 0  # JWTs issued through getJwt
        self.refreshed = 0  # JWTs issued through refreshJwt

    def add_key(self, ak: str, sk: str) -> None:
        with self._lock:
            self._keys[ak] = sk

    # -- the three calls -----------------------------------------------------------------------
    def auth(self, body: dict) -> dict[str, str]:
        ak = str(body.get("ak") or "").strip()
        with self._lock:
            if ak not in self._keys:
                raise SsoRefused("10010", "access key does not exist")
            nonce = secrets.token_hex(16)
            self._nonces[ak] = nonce
        return {"nonce": nonce, "algorithm": ALGORITHM}

    def get_jwt(self, body: dict) -> dict[str, str]:
        ak = str(body.get("ak") or "").strip()
        with self._lock:
            sk, nonce = self._keys.get(ak), self._nonces.pop(ak, None)
            if sk is None or nonce is None:
                raise SsoRefused("10011", "no challenge for this access key: call auth first")
            if not hmac.compare_digest(str(body.get("d") or ""), sign(sk, nonce)):
                raise SsoRefused("10012", "signature does not match the secret key")
            self.minted += 1
            return self._issue(ak)

    def refresh_jwt(self, body: dict) -> dict[str, str]:
        ak = str(body.get("ak") or "").strip()
        token = str(body.get("refresh_token") or "")
        with self._lock:
            issued = self._refresh.pop(token, None)
            if issued is None or issued.ak != ak:
                raise SsoRefused("10013", "unknown refresh token")
            if issued.expires <= time.time():
                raise SsoRefused("10014", "refresh token expired")
            self.refreshed += 1
            return self._issue(ak)

    def _issue(self, ak: str) -> dict[str, str]:
        now = time.time()
        exp, rexp = now + self.jwt_ttl, now + self.refresh_ttl
        jwt = _make_jwt(ak, exp)
        refresh = secrets.token_urlsafe(24)
        self._jwts[jwt] = _Issued(ak, exp)
        self._refresh[refresh] = _Issued(ak, rexp)
        return {
            "jwt": jwt,
            "expiration": cst_time(exp),
            "sso_uid": hashlib.sha1(ak.encode()).hexdigest()[:16],
            "refresh_token": refresh,
            "refresh_expiration": cst_time(rexp),
        }

    # -- checks --------------------------------------------------------------------------------
    def owner(self, jwt: str) -> str | None:
        """The access key ``jwt`` was issued for; None for a token this service never issued.
        Raises JwtExpired for one past its expiration."""
        with self._lock:
            issued = self._jwts.get(jwt)
        if issued is None:
            return None
        if issued.expires <= time.time():
            raise JwtExpired(jwt)
        return issued.ak


def _make_jwt(ak: str, exp: float) -> str:
    """A token in JWT form (header.payload.signature); clients treat it as opaque."""

    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    head = part({"type": "JWT", "alg": "HS512"})
    body = part(
        {"jti": secrets.token_hex(4), "iss": "model-zoo local hub", "ak": ak, "exp": int(exp)}
    )
    return f"{head}.{body}.{secrets.token_urlsafe(32)}"
