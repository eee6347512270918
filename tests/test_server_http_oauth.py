"""pow-mcp as an OAuth 2.1 resource server, end to end: a real server process, a real test
issuer on loopback (tests/oauth_issuer.py) and the SDK's own client, its OAuth support
included."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from tests.mcp_helpers import call, call_error, free_port, http_server, run_cli, server_pids
from tests.oauth_issuer import Serving, serving
from tests.test_server_http_auth import client_with

ACCEPT = {"Accept": "application/json, text/event-stream"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}


def start_call(job_prefix: str) -> dict[str, Any]:
    params = {"name": "start_proof_of_work", "arguments": {"prefix": job_prefix, "difficulty": 1}}
    return {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params}


def post(url: str, body: dict[str, Any], token: str | None = None) -> httpx2.Response:
    headers = {**ACCEPT, **({"Authorization": f"Bearer {token}"} if token else {})}
    return httpx2.post(url, json=body, headers=headers, timeout=30)


@contextlib.contextmanager
def issuer_and_server(
    data_dir: Path, log: list[str] | None = None, **env: str
) -> Iterator[tuple[Serving, str]]:
    """A test issuer, and pow-mcp on a free port taking its tokens; yields both."""
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    with serving(resource) as served:
        oauth = {"POW_MCP_OAUTH_ISSUER": served.issuer.url, "POW_MCP_RESOURCE_URL": resource}
        with http_server(data_dir, port=port, log=log, **oauth, **env) as url:
            assert url == resource
            yield served, url


def test_the_server_takes_only_valid_tokens_from_its_issuer(tmp_path: Path) -> None:
    log: list[str] = []
    with issuer_and_server(tmp_path / "data", log) as (served, url):
        issuer = served.issuer
        base = url.removesuffix("/mcp")
        metadata_url = f"{base}/.well-known/oauth-protected-resource/mcp"
        for address in (metadata_url, f"{base}/.well-known/oauth-protected-resource"):
            assert httpx2.get(address).json() == {
                "resource": url,
                "authorization_servers": [issuer.url],
                "scopes_supported": ["pow:read", "pow:write"],
                "bearer_methods_supported": ["header"],
                "resource_name": "pow-mcp",
            }
        assert httpx2.get(f"{base}/jobs").status_code == 200  # the page carries no data

        missing = post(url, INITIALIZE)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == (
            f'Bearer scope="pow:read pow:write", resource_metadata="{metadata_url}"'
        )

        now = int(time.time())
        claims = issuer.claims()
        issuer.add_key("k9", publish=False)
        refused = [
            ("has expired", issuer.token(exp=now - 120)),
            ("not valid yet", issuer.token(nbf=now + 600)),
            ("another audience", issuer.token(aud="https://other.example/mcp")),
            ("another issuer", issuer.token(iss="http://127.0.0.1:9/realms/other")),
            ("not publish", issuer.token(kid="k9")),
            ("no sub claim", issuer.token(sub=None)),
            (
                "algorithm is not accepted",
                issuer.forged({"alg": "none", "kid": "k1"}, claims, None),
            ),
            # The classic confusion: HMAC keyed with the public key a JWKS hands to anyone.
            (
                "algorithm is not accepted",
                issuer.forged({"alg": "HS256", "kid": "k1"}, claims, issuer.public_pem("k1")),
            ),
            ("not a JWT", "opaque-but-no-introspection-credentials"),
        ]
        for reason, token in refused:
            answer = post(url, INITIALIZE, token)
            assert answer.status_code == 401, reason
            challenge = answer.headers["www-authenticate"]
            assert challenge.startswith('Bearer error="invalid_token", error_description="')
            assert reason in challenge and f'resource_metadata="{metadata_url}"' in challenge
            assert answer.json()["error"] == "invalid_token"
        assert post(url, INITIALIZE, issuer.token(exp=now - 30)).status_code == 200  # leeway

        # A session belongs to the identity that opened it (the SDK checks, from the token).
        alice, bob = issuer.token("alice"), issuer.token("bob")
        session = {"mcp-session-id": post(url, INITIALIZE, alice).headers["mcp-session-id"]}
        ping = {"jsonrpc": "2.0", "id": 3, "method": "ping"}
        for who, token, status in (("alice", alice, 200), ("bob", bob, 404)):
            headers = {**ACCEPT, **session, "Authorization": f"Bearer {token}"}
            assert httpx2.post(url, json=ping, headers=headers).status_code == status, who

        reader = issuer.token("dave", "pow:read")
        forbidden = post(url, start_call("dave-"), reader)
        assert forbidden.status_code == 403
        assert forbidden.headers["www-authenticate"] == (
            'Bearer error="insufficient_scope", error_description="starting or changing jobs '
            f'needs the pow:write scope, which this token lacks", scope="pow:write", '
            f'resource_metadata="{metadata_url}"'
        )
    jobs = tmp_path / "data" / "jobs.json"
    assert not jobs.exists() or "dave-" not in jobs.read_text()  # nothing was created
    presented = [token for _, token in refused] + [alice, bob, reader]
    assert not [token for token in presented if token in "".join(log)]


async def test_principals_scopes_and_the_admin_scope(tmp_path: Path) -> None:
    with issuer_and_server(tmp_path / "data") as (served, url):
        issuer = served.issuer
        async with (
            client_with(url, issuer.token("alice")) as alice,
            client_with(url, issuer.token("bob")) as bob,
            client_with(url, issuer.token("root", "pow:admin")) as admin,
            client_with(url, issuer.token("alice", "pow:read")) as alice_reads,
        ):
            mine = await call(alice, "start_proof_of_work", prefix="alice-", difficulty=1)
            record = await call(alice, "wait_for_job", job_id=mine["job_id"])
            assert record["principal"] == f"{issuer.url}#alice"
            error = await call_error(bob, "query_proof_of_work_status", job_id=mine["job_id"])
            assert "no job with id" in error
            assert (await call(bob, "list_jobs"))["total"] == 0

            # Read-only: the same principal's jobs, but nothing that starts or changes one.
            seen = await call(alice_reads, "query_proof_of_work_status", job_id=mine["job_id"])
            assert seen["status"] == "completed"
            assert (
                await call(
                    alice_reads,
                    "verify_proof_of_work",
                    prefix="alice-",
                    nonce=str(record["result"]["proof_of_work"]["nonce"]),
                    difficulty=1,
                )
            )["valid"]

            theirs = await call(bob, "start_proof_of_work", prefix="bob-", difficulty=12)
            assert {j["job_id"] for j in (await call(admin, "list_jobs"))["jobs"]} == {
                mine["job_id"],
                theirs["job_id"],
            }
            assert (await call(admin, "cancel_job", job_id=theirs["job_id"]))["cancelled"]


def test_the_issuer_down_at_start_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    with serving(f"http://127.0.0.1:{port}/mcp") as served:
        issuer_url = served.issuer.url
        served.stop()
        stopped = run_cli(
            tmp_path / "data",
            *("--transport", "http", "--port", str(port)),
            POW_MCP_OAUTH_ISSUER=issuer_url,
            POW_MCP_RESOURCE_URL=f"http://127.0.0.1:{port}/mcp",
        )
    assert stopped.returncode == 1
    assert f"pow-mcp: POW_MCP_OAUTH_ISSUER={issuer_url}: cannot reach" in stopped.stderr
    assert "check the URL and that the issuer is up" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert not (tmp_path / "data").exists()  # it stopped before opening the store


def test_new_keys_are_fetched_and_known_ones_outlive_the_issuer(tmp_path: Path) -> None:
    log: list[str] = []
    with issuer_and_server(tmp_path / "data", log) as (served, url):
        issuer = served.issuer
        issuer.add_key("k2")  # published after the server fetched the keys
        assert post(url, INITIALIZE, issuer.token(kid="k2")).status_code == 200

        issuer.add_key("k3", publish=False)
        tokens = [issuer.token(), issuer.token(kid="k2"), issuer.token(kid="k3")]
        served.stop()
        assert [post(url, INITIALIZE, t).status_code for t in tokens] == [200, 200, 401]
        assert (
            "signed with a key the issuer does not publish"
            in post(url, INITIALIZE, tokens[2]).headers["www-authenticate"]
        )
    assert not any(token in "".join(log) for token in tokens)


async def test_opaque_tokens_are_introspected_with_a_secret_kept_out_of_sight(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    with serving(resource) as served:
        issuer = served.issuer
        secret_file = tmp_path / "client-secret"
        secret_file.write_text(issuer.client_secret + "\n")
        env = {
            "POW_MCP_OAUTH_ISSUER": issuer.url,
            "POW_MCP_RESOURCE_URL": resource,
            "POW_MCP_OAUTH_CLIENT_ID": issuer.client_id,
            "POW_MCP_OAUTH_CLIENT_SECRET_FILE": str(secret_file),
        }
        with http_server(tmp_path / "data", port=port, log=log, **env) as url:
            reader = issuer.opaque_token("erin", "pow:read")
            assert post(url, start_call("erin-"), reader).status_code == 403
            async with client_with(url, issuer.opaque_token("erin", "pow:read pow:write")) as erin:
                started = await call(erin, "start_proof_of_work", prefix="erin-", difficulty=1)
                record = await call(erin, "wait_for_job", job_id=started["job_id"])
                assert record["principal"] == f"{issuer.url}#erin"
            for token, reason in (
                ("opaque-never-issued", "not active"),
                (issuer.opaque_token("erin", aud="https://other.example/mcp"), "another audience"),
            ):
                answer = post(url, INITIALIZE, token)
                assert answer.status_code == 401 and reason in answer.headers["www-authenticate"]

            issuer.client_secret = "rotated-" + issuer.client_secret  # ours is now wrong
            answer = post(url, INITIALIZE, issuer.opaque_token("erin"))
            assert answer.status_code == 401
            assert "could not be asked" in answer.headers["www-authenticate"]
            [pid] = server_pids(tmp_path / "data")
            command_line = command_line_of(pid)
    assert any("check POW_MCP_OAUTH_CLIENT_ID" in line for line in log)
    secret = secret_file.read_text().strip()
    assert secret not in command_line and secret not in "".join(log)
    assert not [token for token in issuer.opaque if token in "".join(log)]


def command_line_of(pid: int) -> str:
    """What `ps` shows of a process's command line."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_static_tokens_and_an_issuer_together_are_refused(tmp_path: Path) -> None:
    refused = run_cli(
        tmp_path,
        *("--transport", "http"),
        POW_MCP_TOKEN="static-token-0123456789",
        POW_MCP_OAUTH_ISSUER="https://idp.example/realms/pow",
        POW_MCP_RESOURCE_URL="https://pow.example/mcp",
    )
    assert refused.returncode == 2
    assert "POW_MCP_OAUTH_ISSUER and POW_MCP_TOKEN are both set" in refused.stderr
    assert "static-token-0123456789" not in refused.stderr


class Memory:
    """The SDK client's token storage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


async def test_the_sdk_client_signs_in_and_steps_up_for_write_access(tmp_path: Path) -> None:
    """Discovery from the 401, dynamic registration, authorization code with PKCE and the
    resource indicator, then a 403 that makes the client ask for pow:write."""
    with issuer_and_server(tmp_path / "data") as (served, url):
        issuer = served.issuer
        issuer.user, issuer.may_grant = "carol", {"pow:read"}
        redirects: list[AuthorizationCodeResult] = []

        async def consent(authorization_url: str) -> None:
            # What a browser would do: the issuer consents at once and redirects back.
            async with httpx2.AsyncClient() as browser:
                answer = await browser.get(authorization_url)
            assert answer.status_code == 302, answer.text
            query = {
                k: v[0] for k, v in parse_qs(urlparse(answer.headers["location"]).query).items()
            }
            redirects.append(AuthorizationCodeResult(**query))

        async def redirected() -> AuthorizationCodeResult:
            return redirects[-1]

        provider = OAuthClientProvider(
            server_url=url,
            client_metadata=OAuthClientMetadata.model_validate(
                {
                    "client_name": "pow-mcp tests",
                    "redirect_uris": ["http://127.0.0.1:9/callback"],
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                    "token_endpoint_auth_method": "none",
                }
            ),
            storage=Memory(),
            redirect_handler=consent,
            callback_handler=redirected,
        )
        async with (
            httpx2.AsyncClient(auth=provider, timeout=60) as http,
            Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
        ):
            assert (await call(client, "list_jobs"))["total"] == 0
            assert len(redirects) == 1  # signed in once, granted pow:read only

            issuer.may_grant.add("pow:write")  # an administrator lets carol start jobs
            started = await call(client, "start_proof_of_work", prefix="carol-", difficulty=1)
            assert len(redirects) == 2  # the 403 sent the client to ask for pow:write
            record = await call(client, "wait_for_job", job_id=started["job_id"])
        assert record["status"] == "completed"
        assert record["principal"] == f"{issuer.url}#carol"
