"""What this server reads from the OAuth issuer: its metadata, its signing keys (kept fresh)
and its introspection answers on opaque tokens."""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import anyio
import httpx2
import jwt
from mcp.client.auth.utils import build_oauth_authorization_server_metadata_discovery_urls

log = logging.getLogger(__name__)

# The asymmetric algorithms a token may be signed with, and the key each one needs (type,
# curve). Never `none`, and never HMAC: a key from the JWKS is public, not a shared secret.
KEY_TYPES: dict[str, tuple[str, str | None]] = {
    **{f"RS{bits}": ("RSA", None) for bits in (256, 384, 512)},
    **{f"PS{bits}": ("RSA", None) for bits in (256, 384, 512)},
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}
KEYS_MAX_AGE_SECONDS = 3600.0  # then the keys are fetched again: withdrawn keys stop working
REFRESH_INTERVAL_SECONDS = 60.0  # at most one fetch of the keys per minute on a request's behalf
INTROSPECTION_CACHE_SECONDS = 60.0  # how long the issuer's word on an opaque token holds
INTROSPECTION_CACHE_SIZE = 10_000
ISSUER_TIMEOUT_SECONDS = 5.0


class IssuerUnavailable(Exception):
    """The issuer did not answer as it should; the message says how."""


class SigningKeys:
    """The issuer's public signing keys (its JWKS), cached.

    Fetched at start-up; again when a token names a key id the cache lacks (a rotation) or
    when the cache is older than `max_age` (so withdrawn keys stop working), but at most once
    per `refresh_interval`, so tokens with made-up key ids cannot make this server hammer the
    issuer. A failed fetch keeps the keys it had: an issuer that is down does not stop
    tokens signed with known keys.
    """

    def __init__(
        self,
        http: httpx2.AsyncClient,
        url: str,
        *,
        refresh_interval: float = REFRESH_INTERVAL_SECONDS,
        max_age: float = KEYS_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http, self.url = http, url
        self.refresh_interval, self.max_age, self.clock = refresh_interval, max_age, clock
        self._keys: list[dict[str, Any]] = []
        self._fetched = -math.inf  # when the cached keys were fetched
        self._tried = -math.inf  # when a request last made us fetch them
        self._lock = anyio.Lock()

    async def load(self) -> None:
        """The first fetch (start-up): IssuerUnavailable says why it failed."""
        self._keys = await self._fetch()
        self._fetched = self.clock()

    async def find(self, kid: str | None) -> list[dict[str, Any]]:
        """The keys a token naming `kid` may be signed with (none: not published)."""
        if not self._matching(kid) or self.clock() - self._fetched >= self.max_age:
            await self._refresh()
        return self._matching(kid)

    def _matching(self, kid: str | None) -> list[dict[str, Any]]:
        if kid is None:  # a token without a key id: only an issuer with one key can mean it
            return self._keys if len(self._keys) == 1 else []
        return [key for key in self._keys if key.get("kid") == kid]

    async def _refresh(self) -> None:
        async with self._lock:
            now = self.clock()
            if now - self._tried < self.refresh_interval:
                return  # tried lately (maybe just now, for a request waiting on the lock)
            self._tried = now
            try:
                self._keys = await self._fetch()
            except IssuerUnavailable as exc:
                log.warning(
                    "cannot refresh the issuer's signing keys from %s (%s); the %d cached keys "
                    "stay in use, and tokens signed with other keys are refused",
                    self.url,
                    exc,
                    len(self._keys),
                )
                return
            self._fetched = now

    async def _fetch(self) -> list[dict[str, Any]]:
        document = await get_json(self.http, self.url)
        keys = document.get("keys") if document is not None else None
        if not isinstance(keys, list):
            raise IssuerUnavailable("its answer has no `keys` list (is it a JWKS?)")
        # Signing keys only: an `oct` (HMAC) key would make a public JWKS a shared secret.
        usable = [
            key
            for key in keys
            if isinstance(key, dict)
            and key.get("kty") in ("RSA", "EC", "OKP")
            and key.get("use", "sig") == "sig"
        ]
        if not usable:
            raise IssuerUnavailable("it lists no RSA, EC or OKP signing key")
        return usable


def verifying_key(jwk: dict[str, Any], alg: str) -> Any:
    """The public key of `jwk` if a token signed with `alg` may use it, else None."""
    kty, crv = KEY_TYPES[alg]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        return None
    if jwk.get("alg", alg) != alg:  # a key published for one algorithm is for that one only
        return None
    try:
        return jwt.PyJWK(jwk, algorithm=alg).key
    except jwt.PyJWTError:
        return None


class Introspection:
    """Opaque tokens, through the issuer's introspection endpoint (RFC 7662), with this
    server's client credentials. An active answer is kept for INTROSPECTION_CACHE_SECONDS
    (at most until the token expires), so a revoked token may work that much longer."""

    def __init__(
        self,
        http: httpx2.AsyncClient,
        url: str,
        client_id: str,
        client_secret: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http, self.url, self.clock = http, url, clock
        # RFC 6749 2.3.1: the id and secret are form-encoded before they go into Basic.
        self._auth = httpx2.BasicAuth(quote(client_id, safe=""), quote(client_secret, safe=""))
        self._known: dict[str, tuple[float, dict[str, Any]]] = {}

    async def claims(self, token: str) -> dict[str, Any]:
        """What the issuer says of `token` (its `active`, `sub`, `scope`, ...)."""
        digest = hashlib.sha256(token.encode()).hexdigest()  # never the token itself as a key
        now = self.clock()
        known = self._known.get(digest)
        if known is not None and known[0] > now:
            return known[1]
        try:
            response = await self.http.post(
                self.url,
                data={"token": token, "token_type_hint": "access_token"},
                auth=self._auth,
                headers={"Accept": "application/json"},
            )
        except httpx2.HTTPError as exc:
            log.warning("cannot reach the introspection endpoint %s (%s)", self.url, _why(exc))
            raise IssuerUnavailable(
                "the issuer could not be asked about this token; try again"
            ) from None
        if response.status_code != 200:
            log.warning(
                "the introspection endpoint %s answered HTTP %d; check "
                "POW_MCP_OAUTH_CLIENT_ID and the client secret",
                self.url,
                response.status_code,
            )
            raise IssuerUnavailable("the issuer could not be asked about this token")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            log.warning("the introspection endpoint %s answered no JSON object", self.url)
            raise IssuerUnavailable("the issuer could not be asked about this token")
        if answer.get("active") is True:
            self._remember(digest, answer, now)
        return answer

    def _remember(self, digest: str, answer: dict[str, Any], now: float) -> None:
        lasts = INTROSPECTION_CACHE_SECONDS
        if isinstance(answer.get("exp"), int | float):
            lasts = min(lasts, answer["exp"] - time.time())
        if len(self._known) >= INTROSPECTION_CACHE_SIZE:
            self._known = {k: v for k, v in self._known.items() if v[0] > now}
            if len(self._known) >= INTROSPECTION_CACHE_SIZE:
                self._known.clear()
        self._known[digest] = (now + lasts, answer)


async def get_json(
    http: httpx2.AsyncClient, url: str, *, missing_ok: bool = False
) -> dict[str, Any] | None:
    """The JSON object at `url`; None for a 404 when `missing_ok`."""
    try:
        response = await http.get(url, headers={"Accept": "application/json"})
    except httpx2.HTTPError as exc:
        raise IssuerUnavailable(f"cannot reach {url}: {_why(exc)}") from None
    if response.status_code == 404 and missing_ok:
        return None
    if response.status_code != 200:
        raise IssuerUnavailable(f"{url} answered HTTP {response.status_code}")
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise IssuerUnavailable(f"{url} answered no JSON object")
    return document


def _why(exc: httpx2.HTTPError) -> str:
    if isinstance(exc, httpx2.TimeoutException):
        return f"no answer within {ISSUER_TIMEOUT_SECONDS:g} s"
    return str(exc) or type(exc).__name__


async def discover(http: httpx2.AsyncClient, issuer: str) -> dict[str, Any]:
    """The issuer's metadata, from the same well-known addresses MCP clients try (RFC 8414,
    then OpenID discovery); its `issuer` must be the configured one (RFC 8414 3.3)."""
    urls = build_oauth_authorization_server_metadata_discovery_urls(issuer, issuer)
    for url in urls:
        metadata = await get_json(http, url, missing_ok=True)
        if metadata is None:
            continue
        if metadata.get("issuer") != issuer:
            raise IssuerUnavailable(
                f"{url} names the issuer {metadata.get('issuer')!r}: set POW_MCP_OAUTH_ISSUER "
                "to exactly that"
            )
        return metadata
    raise IssuerUnavailable(f"no metadata at {', '.join(urls)} (each answered 404)")
