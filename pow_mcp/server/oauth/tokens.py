"""The access token check: a JWT against the issuer's keys, or an opaque token through
introspection, down to the principal and scopes it grants; ready before the server serves."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import jwt
from mcp.server.auth.provider import AccessToken

from pow_mcp.server.config import ConfigError, OAuthSettings
from pow_mcp.server.oauth.issuer import (
    ISSUER_TIMEOUT_SECONDS,
    KEY_TYPES,
    Introspection,
    IssuerUnavailable,
    SigningKeys,
    discover,
    verifying_key,
)

log = logging.getLogger(__name__)

LEEWAY_SECONDS = 60  # clock skew allowed on exp, nbf and iat
MAX_PRINCIPAL = 128  # the job stores' principal column


class Rejected(Exception):
    """A token this server does not accept; the message says why, for the client's
    developer (it goes into `error_description`), and never quotes the token."""


def principal_of(issuer: str, subject: str) -> str:
    """The principal of a token: `issuer#subject`, unique across issuers (an issuer URL
    has no `#`), or, past the stores' 128 characters, `sha256:` and that text's digest."""
    name = f"{issuer}#{subject}"
    if len(name) <= MAX_PRINCIPAL:
        return name
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


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
        try:
            claims = await self.introspection.claims(token)
        except IssuerUnavailable as exc:
            raise Rejected(str(exc)) from None  # the reason is ours, never the token
        return self._check_introspected(token, claims)

    async def _check_jwt(self, token: str, header: dict[str, Any]) -> AccessToken:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in KEY_TYPES:
            raise Rejected("the token's signing algorithm is not accepted (asymmetric ones only)")
        kid = header.get("kid")
        kid = kid if isinstance(kid, str) else None
        keys = [k for k in [verifying_key(j, alg) for j in await self.keys.find(kid)] if k]
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
