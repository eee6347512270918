"""The OAuth resource server's parts in process, against a real test issuer on loopback: the
key cache and its refresh limit (on a clock the test moves), the scope each call needs, the
principal's name, and the settings."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest

from pow_mcp.server.config import ConfigError, OAuthSettings, load_config
from pow_mcp.server.oauth.gate import READ, WRITE, resource_metadata, scope_needed
from pow_mcp.server.oauth.issuer import SigningKeys
from pow_mcp.server.oauth.tokens import MAX_PRINCIPAL, Rejected, TokenCheck, principal_of
from tests.oauth_issuer import LocalIssuer, Serving, serving

RESOURCE = "http://127.0.0.1:8123/mcp"  # no server listens: these tests check tokens only


class Clock:
    """time.monotonic for SigningKeys, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def served() -> Iterator[Serving]:
    with serving(RESOURCE) as issuer:
        yield issuer


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=5) as client:
        yield client


async def token_check(
    issuer: LocalIssuer, http: httpx2.AsyncClient, clock: Clock, **options: float
) -> TokenCheck:
    keys = SigningKeys(http, f"{issuer.url}/jwks", clock=clock, **options)
    await keys.load()
    return TokenCheck(OAuthSettings(issuer.url, RESOURCE), keys, None)


async def test_a_new_key_is_fetched_on_first_sight_then_at_most_once_a_minute(
    served: Serving, http: httpx2.AsyncClient
) -> None:
    issuer, clock = served.issuer, Clock()
    check = await token_check(issuer, http, clock)
    assert (await check.check(issuer.token())).subject == "alice"
    assert issuer.jwks_fetches == 1

    issuer.add_key("k2", publish=False)
    unknown = issuer.token(kid="k2")
    with pytest.raises(Rejected, match="a key the issuer does not publish"):
        await check.check(unknown)
    assert issuer.jwks_fetches == 2  # it looked for k2 once

    issuer.published.add("k2")  # the issuer rotates its keys
    clock.now += 59
    with pytest.raises(Rejected):
        await check.check(unknown)
    assert issuer.jwks_fetches == 2  # not again within the minute, however many tokens ask
    clock.now += 1
    assert (await check.check(unknown)).subject == "alice"
    assert issuer.jwks_fetches == 3


async def test_with_the_issuer_down_cached_keys_go_on_and_a_new_key_fails_cleanly(
    served: Serving, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    issuer, clock = served.issuer, Clock()
    check = await token_check(issuer, http, clock, max_age=600)
    issuer.add_key("k2", publish=False)
    known, new = issuer.token(), issuer.token(kid="k2")
    served.stop()

    clock.now += 601  # the cache is stale: a refresh is due, and fails
    assert (await check.check(known)).subject == "alice"
    assert "cannot refresh the issuer's signing keys" in caplog.text
    assert "1 cached keys stay in use" in caplog.text
    clock.now += 60
    with pytest.raises(Rejected, match="a key the issuer does not publish"):
        await check.check(new)
    assert known not in caplog.text and new not in caplog.text


async def test_a_withdrawn_key_stops_working_once_the_cache_is_an_hour_old(
    served: Serving, http: httpx2.AsyncClient
) -> None:
    issuer, clock = served.issuer, Clock()
    check = await token_check(issuer, http, clock)
    token = issuer.token()
    issuer.published.clear()
    issuer.add_key("k2")
    clock.now += 3599
    assert (await check.check(token)).subject == "alice"
    clock.now += 1
    with pytest.raises(Rejected, match="does not publish"):
        await check.check(token)


def test_each_call_needs_the_scope_of_what_it_does() -> None:
    writes = frozenset({"start_proof_of_work", "cancel_job"})

    def needed(*messages: dict[str, object]) -> str | None:
        body = messages[0] if len(messages) == 1 else list(messages)
        return scope_needed(json.dumps(body).encode(), writes)

    def call(name: str) -> dict[str, object]:
        return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name}}

    assert needed(call("start_proof_of_work")) == WRITE
    assert needed(call("cancel_job")) == WRITE
    assert needed(call("list_jobs")) == READ
    assert needed(call("no_such_tool")) == READ  # answered "unknown tool"; changes nothing
    for method in ("tasks/get", "tasks/list", "tasks/result", "resources/read"):
        assert needed({"method": method}) == READ, method
    assert needed({"method": "completion/complete"}) == READ  # it completes job ids
    assert needed({"method": "tasks/cancel"}) == WRITE
    assert needed({"method": "some/new_method"}) == WRITE  # unknown: the stricter scope
    for method in ("initialize", "ping", "tools/list", "notifications/initialized"):
        assert needed({"method": method}) is None, method
    assert needed({"jsonrpc": "2.0", "id": 7, "result": {}}) is None  # a client's answer
    assert needed({"method": "tasks/get"}, call("start_proof_of_work")) == WRITE  # a batch
    assert scope_needed(b"{not json", writes) is None  # the server answers a parse error
    assert scope_needed(b"[" * 200_000 + b"]" * 200_000, writes) is None


def test_the_principal_is_issuer_and_subject_within_the_stores_limit() -> None:
    assert principal_of("https://idp.example/realms/a", "42") == "https://idp.example/realms/a#42"
    assert principal_of("https://idp.example/realms/a", "42") != principal_of(
        "https://idp.example/realms/b", "42"
    )
    long = principal_of("https://idp.example/" + "x" * 100, "someone@example.com")
    assert long.startswith("sha256:") and len(long) <= MAX_PRINCIPAL


OAUTH = {"POW_MCP_OAUTH_ISSUER": "https://idp.example/realms/pow"}


def test_oauth_settings_are_read_and_bad_ones_refused(tmp_path: Path) -> None:
    base = {"JOBS_DATA_DIR": str(tmp_path), **OAUTH}
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret-value-0123456789\n")
    config = load_config(
        {
            **base,
            "POW_MCP_RESOURCE_URL": "https://pow.example/mcp",
            "POW_MCP_OAUTH_CLIENT_ID": "pow-mcp",
            "POW_MCP_OAUTH_CLIENT_SECRET_FILE": str(secret_file),
        }
    )
    assert config.oauth is not None
    assert config.oauth.client_secret == "s3cret-value-0123456789"
    assert config.oauth.admin_scope == "pow:admin"
    assert "s3cret" not in repr(config)

    refusals = {
        "POW_MCP_RESOURCE_URL is needed": {},
        "must be an https:// URL": {"POW_MCP_RESOURCE_URL": "http://pow.example/mcp"},
        "no query, fragment or user name": {"POW_MCP_RESOURCE_URL": "https://pow.example/mcp#x"},
        "go together": {
            "POW_MCP_RESOURCE_URL": "https://pow.example/mcp",
            "POW_MCP_OAUTH_CLIENT_ID": "pow-mcp",
        },
        "other than pow:read and pow:write": {
            "POW_MCP_RESOURCE_URL": "https://pow.example/mcp",
            "POW_MCP_OAUTH_ADMIN_SCOPE": "pow:read",
        },
        "cannot read it": {
            "POW_MCP_RESOURCE_URL": "https://pow.example/mcp",
            "POW_MCP_OAUTH_CLIENT_ID": "pow-mcp",
            "POW_MCP_OAUTH_CLIENT_SECRET_FILE": str(tmp_path / "missing"),
        },
    }
    for message, env in refusals.items():
        with pytest.raises(ConfigError, match=message):
            load_config({**base, **env})
    with pytest.raises(ConfigError, match="POW_MCP_OAUTH_ISSUER is not"):
        load_config({"JOBS_DATA_DIR": str(tmp_path), "POW_MCP_RESOURCE_URL": "https://p.example"})


def test_urls_are_refused_unless_written_as_clients_compare_them() -> None:
    issuer = "https://idp.example/realms/pow"
    assert resource_metadata(OAuthSettings(issuer, "https://pow.example/mcp")).resource
    with pytest.raises(ConfigError, match=re.escape("write it as 'https://pow.example/mcp'")):
        resource_metadata(OAuthSettings(issuer, "https://POW.example:443/mcp"))
