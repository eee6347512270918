"""pow-mcp as an OAuth 2.1 resource server, as the MCP authorization specification describes.

With POW_MCP_OAUTH_ISSUER set, start-up reads the issuer's metadata (RFC 8414, or OpenID
discovery) for its keys and introspection endpoint, and fetches the keys: a server that
cannot is not started. Every HTTP request then needs an access token from that issuer for
this server (`aud` = POW_MCP_RESOURCE_URL): a JWT, checked here against the issuer's keys,
or an opaque token that the issuer's introspection endpoint (RFC 7662) vouches for. Its
scopes say what it may do (pow:read, pow:write; the admin scope: every principal's jobs).
Clients find the issuer through the protected-resource metadata (RFC 9728).

No token, client secret or key is ever put in a log line or an error: reasons are fixed
texts, and what came from a request is named only by its key id.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import anyio
import httpx2
import jwt
from mcp.client.auth.utils import build_oauth_authorization_server_metadata_discovery_urls
from mcp.server.auth.provider import AccessToken

from pow_mcp.server.config import ConfigError, OAuthSettings

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
LEEWAY_SECONDS = 60  # clock skew allowed on exp, nbf and iat
KEYS_MAX_AGE_SECONDS = 3600.0  # then the keys are fetched again: withdrawn keys stop working
REFRESH_INTERVAL_SECONDS = 60.0  # at most one fetch of the keys per minute on a request's behalf
INTROSPECTION_CACHE_SECONDS = 60.0  # how long the issuer's word on an opaque token holds
INTROSPECTION_CACHE_SIZE = 10_000
ISSUER_TIMEOUT_SECONDS = 5.0
MAX_PRINCIPAL = 128  # the job stores' principal column


class Rejected(Exception):
    """A token this server does not accept; the message says why, for the client's
    developer (it goes into `error_description`), and never quotes the token."""


class IssuerUnavailable(Exception):
    """The issuer did not answer as it should; the message says how."""


def principal_of(issuer: str, subject: str) -> str:
    """The principal of a token: `issuer#subject`, unique across issuers (an issuer URL
    has no `#`), or, past the stores' 128 characters, `sha256:` and that text's digest."""
    name = f"{issuer}#{subject}"
    if len(name) <= MAX_PRINCIPAL:
        return name
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


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
        document = await _get_json(self.http, self.url)
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


def _verifying_key(jwk: dict[str, Any], alg: str) -> Any:
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
            raise Rejected("the issuer could not be asked about this token; try again") from None
        if response.status_code != 200:
            log.warning(
                "the introspection endpoint %s answered HTTP %d; check "
                "POW_MCP_OAUTH_CLIENT_ID and the client secret",
                self.url,
                response.status_code,
            )
            raise Rejected("the issuer could not be asked about this token")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            log.warning("the introspection endpoint %s answered no JSON object", self.url)
            raise Rejected("the issuer could not be asked about this token")
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


class TokenCheck:
    """Access tokens of one issuer for one resource: a JWT is checked against the issuer's
    keys; anything else goes to introspection, if set up. (The SDK's TokenVerifier answers
    None for a refused token; this says why, for the 401's `error_description`.)"""

    def __init__(
        self, settings: OAuthSettings, keys: SigningKeys, introspection: Introspection | None
    ) -> None:
        self.settings, self.keys, self.introspection = settings, keys, introspection

    async def check(self, token: str) -> AccessToken:
        """The access a token grants; Rejected says why it grants none."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            header = None
        if header is not None:
            return await self._check_jwt(token, header)
        if self.introspection is None:
            raise Rejected(
                "the token is not a JWT, and this server has no client credentials to ask the "
                "issuer about opaque tokens"
            )
        return self._check_introspected(token, await self.introspection.claims(token))

    async def _check_jwt(self, token: str, header: dict[str, Any]) -> AccessToken:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in KEY_TYPES:
            raise Rejected("the token's signing algorithm is not accepted (asymmetric ones only)")
        kid = header.get("kid")
        kid = kid if isinstance(kid, str) else None
        keys = [k for k in [_verifying_key(j, alg) for j in await self.keys.find(kid)] if k]
        if not keys:
            log.info(
                "refused a token signed with key %r, which the issuer does not publish",
                kid and kid[:64],
            )
            raise Rejected("the token is signed with a key the issuer does not publish")
        settings = self.settings
        try:
            claims = jwt.decode(
                token,
                keys[0],
                algorithms=[alg],
                audience=settings.resource,
                issuer=settings.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise Rejected(_jwt_reason(exc)) from None
        return self._access(token, claims)

    def _check_introspected(self, token: str, claims: dict[str, Any]) -> AccessToken:
        if claims.get("active") is not True:
            raise Rejected("the issuer says the token is not active (expired, revoked or unknown)")
        if claims.get("iss", self.settings.issuer) != self.settings.issuer:
            raise Rejected("the token was issued by another issuer")
        if self.settings.resource not in _audiences(claims.get("aud")):
            raise Rejected("the token was issued for another audience than this server")
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if isinstance(exp, int | float) and exp + LEEWAY_SECONDS < now:
            raise Rejected("the token has expired")
        if isinstance(nbf, int | float) and nbf - LEEWAY_SECONDS > now:
            raise Rejected("the token is not valid yet")
        return self._access(token, {**claims, "iss": self.settings.issuer})

    def _access(self, token: str, claims: dict[str, Any]) -> AccessToken:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Rejected("the token names no subject (sub)")
        client = claims.get("client_id") or claims.get("azp") or ""
        exp = claims.get("exp")
        return AccessToken(
            token=token,
            client_id=str(client),
            scopes=_scopes(claims),
            expires_at=int(exp) if isinstance(exp, int | float) else None,
            resource=self.settings.resource,
            subject=subject,
            claims={"iss": self.settings.issuer},
        )


def _jwt_reason(exc: jwt.PyJWTError) -> str:
    """A fixed text for what PyJWT found (its own messages may quote the token)."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the token is not valid yet (nbf or iat is in the future)"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "the token was issued for another audience than this server"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "the token was issued by another issuer"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the token has no {exc.claim} claim"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the token's signature does not verify"
    return "the token is not a valid JWT"


def _audiences(aud: object) -> list[str]:
    if isinstance(aud, str):
        return [aud]
    return [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []


def _scopes(claims: dict[str, Any]) -> list[str]:
    """`scope` (RFC 9068, a space-separated string) or `scp` (Okta: a list; Entra ID: a
    string)."""
    granted: list[str] = []
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            granted += value.split()
        elif isinstance(value, list):
            granted += [s for s in value if isinstance(s, str)]
    return list(dict.fromkeys(granted))


async def _get_json(
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
        metadata = await _get_json(http, url, missing_ok=True)
        if metadata is None:
            continue
        if metadata.get("issuer") != issuer:
            raise IssuerUnavailable(
                f"{url} names the issuer {metadata.get('issuer')!r}: set POW_MCP_OAUTH_ISSUER "
                "to exactly that"
            )
        return metadata
    raise IssuerUnavailable(f"no metadata at {', '.join(urls)} (each answered 404)")


@contextlib.asynccontextmanager
async def open_token_check(settings: OAuthSettings) -> AsyncIterator[TokenCheck]:
    """The token check for `settings`, ready: metadata read, keys fetched. ConfigError (the
    server does not start) if the issuer cannot be used."""
    async with httpx2.AsyncClient(timeout=ISSUER_TIMEOUT_SECONDS) as http:
        try:
            check = await _ready(http, settings)
        except IssuerUnavailable as exc:
            raise ConfigError(
                f"POW_MCP_OAUTH_ISSUER={settings.issuer}: {exc}. The server needs the "
                "issuer's metadata and keys before it serves: check the URL and that the "
                "issuer is up"
            ) from None
        yield check


async def _ready(http: httpx2.AsyncClient, settings: OAuthSettings) -> TokenCheck:
    credentials = settings.client_id is not None and settings.client_secret is not None
    metadata: dict[str, Any] = {}
    if settings.jwks_url is None or credentials:
        metadata = await discover(http, settings.issuer)
    jwks_url = settings.jwks_url or metadata.get("jwks_uri")
    if not isinstance(jwks_url, str):
        raise IssuerUnavailable("its metadata names no jwks_uri")
    keys = SigningKeys(http, jwks_url)
    await keys.load()
    introspection = None
    if credentials:
        endpoint = metadata.get("introspection_endpoint")
        if not isinstance(endpoint, str):
            raise IssuerUnavailable(
                "POW_MCP_OAUTH_CLIENT_ID is set for opaque tokens, but the issuer's metadata "
                "names no introspection_endpoint"
            )
        assert settings.client_id is not None and settings.client_secret is not None
        introspection = Introspection(http, endpoint, settings.client_id, settings.client_secret)
    log.info(
        "OAuth: tokens from %s for %s; signing keys from %s%s",
        settings.issuer,
        settings.resource,
        jwks_url,
        f"; opaque tokens through {introspection.url}" if introspection else "",
    )
    return TokenCheck(settings, keys, introspection)
