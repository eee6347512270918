"""The job resources over MCP: subscriptions on both protocol versions, completion of
job ids, and capabilities that say only what the server does."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp_types import (
    INVALID_PARAMS,
    ResourceTemplateReference,
    ResourceUpdatedNotification,
    TextResourceContents,
)

from tests.mcp_helpers import call, connect, server_params

LONG = {"prefix": "never-", "difficulty": 12}


class Updates:
    """notifications/resources/updated as a 2025 client receives them."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self._arrived = anyio.Event()

    async def handler(self, message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.uris.append(str(message.params.uri))
            self._arrived.set()
            self._arrived = anyio.Event()

    async def until(self, count: int) -> None:
        with anyio.fail_after(60):
            while len(self.uris) < count:
                await self._arrived.wait()


async def record_of(client: Client, job_id: str) -> dict[str, Any]:
    (content,) = (await client.read_resource(f"pow://jobs/{job_id}")).contents
    assert isinstance(content, TextResourceContents)
    record: dict[str, Any] = json.loads(content.text)
    return record


@pytest.mark.filterwarnings("ignore:resources/.*subscribe is removed")
async def test_a_2025_subscriber_hears_about_its_job_only_and_at_most_once_a_second(
    tmp_path: Path,
) -> None:
    updates = Updates()
    params = server_params(tmp_path, POW_WORKERS="2")
    async with Client(params, mode="legacy", message_handler=updates.handler) as client:
        capabilities = client.session.server_capabilities
        assert capabilities is not None and capabilities.resources is not None
        assert capabilities.resources.subscribe is True
        assert capabilities.resources.list_changed is False and capabilities.prompts is None
        mine = await call(client, "start_proof_of_work", **LONG)
        other = await call(client, "start_proof_of_work", **LONG)
        uri = f"pow://jobs/{mine['job_id']}"
        await client.subscribe_resource(uri)
        began = time.monotonic()
        await updates.until(3)  # its progress moves
        progress_updates = len(updates.uris)
        elapsed = time.monotonic() - began
        await call(client, "cancel_job", job_id=other["job_id"])
        await call(client, "cancel_job", job_id=mine["job_id"])
        while (await record_of(client, mine["job_id"]))["status"] != "cancelled":
            await updates.until(len(updates.uris) + 1)
        await updates.until(progress_updates + 1)  # the cancel itself is told
        assert set(updates.uris) == {uri}
        # at most one progress update a second (one more for the job's start)
        assert progress_updates <= elapsed + 2

        await client.unsubscribe_resource(uri)
        with pytest.raises(MCPError) as unknown:
            await client.subscribe_resource("pow://jobs/pow_1_nosuchjob")
        assert unknown.value.error.code == INVALID_PARAMS
        with pytest.raises(MCPError) as not_a_job:
            await client.subscribe_resource("pow://jobs")
        assert not_a_job.value.error.code == INVALID_PARAMS


async def test_a_2026_listen_stream_carries_its_jobs_updates(tmp_path: Path) -> None:
    async with Client(server_params(tmp_path, POW_WORKERS="2")) as client:
        capabilities = client.session.server_capabilities
        assert capabilities is not None and capabilities.resources is not None
        assert capabilities.resources.subscribe is True
        assert capabilities.resources.list_changed is False
        assert capabilities.tools is not None and capabilities.tools.list_changed is False
        mine = await call(client, "start_proof_of_work", **LONG)
        other = await call(client, "start_proof_of_work", **LONG)
        uri = f"pow://jobs/{mine['job_id']}"
        seen: list[str] = []
        async with client.listen(resource_subscriptions=[uri]) as subscription:
            with anyio.fail_after(60):
                async for event in subscription:
                    seen.append(str(getattr(event, "uri", event)))
                    if len(seen) == 2:
                        await call(client, "cancel_job", job_id=other["job_id"])
                        await call(client, "cancel_job", job_id=mine["job_id"])
                    if (
                        len(seen) >= 3
                        and (await record_of(client, mine["job_id"]))["status"] == "cancelled"
                    ):
                        break
        assert set(seen) == {uri}


async def test_job_ids_complete_from_the_store(tmp_path: Path) -> None:
    async with connect(tmp_path) as client:
        first = await call(client, "start_proof_of_work", prefix="c1-", difficulty=1)
        second = await call(client, "start_proof_of_work", prefix="c2-", difficulty=1)
        ref = ResourceTemplateReference(type="ref/resource", uri="pow://jobs/{job_id}")

        async def complete(value: str, name: str = "job_id") -> list[str]:
            result = await client.complete(ref, {"name": name, "value": value})
            return result.completion.values

        assert await complete("pow_") == [second["job_id"], first["job_id"]]
        assert await complete(first["job_id"]) == [first["job_id"]]
        assert await complete("batch_") == []
        assert await complete("pow_", name="other") == []

        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["pow://jobs/{job_id}"]
        assert [str(r.uri) for r in (await client.list_resources()).resources] == ["pow://jobs"]
