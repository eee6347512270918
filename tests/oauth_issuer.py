"""A test OAuth 2.1 authorization server on loopback, for the resource-server tests.

Its keys are made in the test; it serves OpenID discovery under its issuer path only (as
Keycloak does: `{issuer}/.well-known/openid-configuration`, so clients and pow-mcp must
fall back through the well-known addresses), its JWKS, dynamic client registration, an
authorization endpoint that consents at once for `user` (no browser), a token endpoint
with PKCE, and introspection of the opaque tokens it handed out. Tokens are also minted
directly, in any shape a test needs (expired, wrong audience, `alg: none`, ...).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

ISSUER_PATH = "/realms/pow"
# What an endpoint answers: status, JSON body (None: empty), extra headers.
Answer = tuple[int, dict[str, Any] | None, dict[str, str]]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Code:
    """An authorization code waiting to be exchanged."""

    client_id: str
    redirect_uri: str
    challenge: str
    resource: str | None
    scope: str
    subject: str


@dataclass
class LocalIssuer:
    """The issuer's state; tests change it while it serves (publish a key, go down)."""

    resource: str  # the audience its tokens carry unless a test says otherwise
    keys: dict[str, tuple[str, PrivateKeyTypes]] = field(default_factory=dict)  # kid: alg, key
    published: set[str] = field(default_factory=set)
    jwks_fetches: int = 0
    client_id: str = "pow-mcp"  # pow-mcp's own credentials, for introspection
    client_secret: str = field(default_factory=lambda: "cs-" + secrets.token_urlsafe(24))
    introspection: bool = True
    opaque: dict[str, dict[str, Any]] = field(default_factory=dict)  # token: its claims
    user: str = "alice"  # who consents at the authorization endpoint
    may_grant: set[str] = field(default_factory=lambda: {"pow:read", "pow:write"})
    clients: dict[str, list[str]] = field(default_factory=dict)  # client_id: redirect URIs
    codes: dict[str, Code] = field(default_factory=dict)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_key(self, kid: str, *, alg: str = "ES256", publish: bool = True) -> None:
        key: PrivateKeyTypes
        if alg.startswith(("RS", "PS")):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        self.keys[kid] = (alg, key)
        if publish:
            self.published.add(kid)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in sorted(self.published):
            alg, key = self.keys[kid]
            algorithm = jwt.get_algorithm_by_name(alg)
            jwk = json.loads(algorithm.to_jwk(key.public_key()))  # type: ignore[union-attr]
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": alg})
        return {"keys": keys}

    def public_pem(self, kid: str) -> bytes:
        return (
            self.keys[kid][1]
            .public_key()  # type: ignore[union-attr]
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def claims(
        self,
        sub: str = "alice",
        scope: str = "pow:read pow:write",
        *,
        lifetime: float = 300,
        **overrides: Any,
    ) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": sub,
            "aud": self.resource,
            "iat": now,
            "exp": now + int(lifetime),
            "scope": scope,
            "client_id": "test-client",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        sub: str = "alice",
        scope: str = "pow:read pow:write",
        *,
        kid: str = "k1",
        **claims: Any,
    ) -> str:
        """A JWT signed with key `kid`; `claims` override the usual ones (None drops one)."""
        alg, key = self.keys[kid]
        payload = self.claims(sub, scope, **claims)
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})  # type: ignore[arg-type]

    def forged(self, header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
        """A token PyJWT would refuse to make: `alg: none` (no signature) or HMAC with
        `secret` (the public key, in the classic confusion attack)."""
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
        if secret is None:
            return signing_input + "."
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(mac)}"

    def opaque_token(self, sub: str = "alice", scope: str = "pow:read", **claims: Any) -> str:
        token = "opaque-" + secrets.token_urlsafe(24)
        self.opaque[token] = {"active": True, **self.claims(sub, scope, **claims)}
        return token

    def metadata(self) -> dict[str, Any]:
        document = {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "registration_endpoint": f"{self.url}/register",
            "jwks_uri": f"{self.url}/jwks",
            "scopes_supported": ["openid", "pow:read", "pow:write", "pow:admin"],
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "authorization_response_iss_parameter_supported": True,
        }
        if self.introspection:
            document["introspection_endpoint"] = f"{self.url}/introspect"
        return document

    def get(self, path: str, query: dict[str, str]) -> Answer:
        if path == "/.well-known/openid-configuration":
            return 200, self.metadata(), {}
        if path == "/jwks":
            self.jwks_fetches += 1
            return 200, self.jwks(), {}
        if path == "/authorize":
            return self.authorize(query)
        return 404, None, {}

    def post(self, path: str, form: dict[str, str], raw: bytes, auth: str) -> Answer:
        if path == "/register":
            return self.register(json.loads(raw))
        if path == "/token":
            return self.exchange(form)
        if path == "/introspect":
            return self.introspect(form, auth)
        return 404, None, {}

    def register(self, request: dict[str, Any]) -> Answer:
        client_id = "client-" + secrets.token_hex(8)
        self.clients[client_id] = list(request.get("redirect_uris") or [])
        answer = {
            **request,
            "client_id": client_id,
            "client_id_issued_at": int(time.time()),
            "token_endpoint_auth_method": "none",
        }
        return 201, answer, {}

    def authorize(self, query: dict[str, str]) -> Answer:
        redirect = query.get("redirect_uri", "")
        if redirect not in self.clients.get(query.get("client_id", ""), []):
            return 400, {"error": "invalid_request"}, {}
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return 400, {"error": "invalid_request", "error_description": "PKCE S256"}, {}
        granted = [s for s in query.get("scope", "").split() if s in self.may_grant]
        code = secrets.token_urlsafe(16)
        self.codes[code] = Code(
            query["client_id"],
            redirect,
            query["code_challenge"],
            query.get("resource"),
            " ".join(granted),
            self.user,
        )
        answer = {"code": code, "state": query.get("state", ""), "iss": self.url}
        return 302, None, {"Location": f"{redirect}?{urlencode(answer)}"}

    def exchange(self, form: dict[str, str]) -> Answer:
        code = self.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        if (
            code is None
            or form.get("client_id") != code.client_id
            or form.get("redirect_uri") != code.redirect_uri
            or _b64(hashlib.sha256(verifier.encode()).digest()) != code.challenge
        ):
            return 400, {"error": "invalid_grant"}, {}
        # RFC 8707: the token is for the resource the client named.
        audience = code.resource or self.resource
        kid = sorted(self.published)[0]
        token = self.token(
            code.subject, code.scope, kid=kid, aud=audience, client_id=code.client_id
        )
        answer = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": code.scope,
        }
        return 200, answer, {}

    def introspect(self, form: dict[str, str], auth: str) -> Answer:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if not hmac.compare_digest(auth, f"Basic {expected}"):
            return 401, {"error": "invalid_client"}, {}
        return 200, self.opaque.get(form.get("token", ""), {"active": False}), {}


@dataclass
class Serving:
    """A LocalIssuer on a loopback port, until `stop`."""

    issuer: LocalIssuer
    server: ThreadingHTTPServer
    thread: threading.Thread

    def stop(self) -> None:
        """The issuer goes down: its port refuses connections from now on."""
        if not self.thread.is_alive():
            return
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def serve(issuer: LocalIssuer) -> Serving:
    """Serve `issuer` on 127.0.0.1 (a free port); sets its `url`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            self._answer(self._route(url.path, lambda p: issuer.get(p, query)))

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            auth = self.headers.get("Authorization", "")
            self._answer(self._route(self.path, lambda p: issuer.post(p, form, raw, auth)))

        def _route(self, path: str, handle: Any) -> Answer:
            if not path.startswith(ISSUER_PATH + "/"):
                return 404, None, {}
            with issuer.lock:
                answer: Answer = handle(path.removeprefix(ISSUER_PATH))
                return answer

        def _answer(self, answer: Answer) -> None:
            status, document, headers = answer
            body = json.dumps(document).encode() if document is not None else b""
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}{ISSUER_PATH}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    return Serving(issuer, server, thread)


@contextlib.contextmanager
def serving(resource: str, *kids: str) -> Iterator[Serving]:
    """An issuer for `resource` with ES256 keys `kids` (default k1), served until the end."""
    issuer = LocalIssuer(resource)
    for kid in kids or ("k1",):
        issuer.add_key(kid)
    served = serve(issuer)
    try:
        yield served
    finally:
        served.stop()
