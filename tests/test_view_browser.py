"""The job view as a person sees it, in a real headless Chromium against live servers:
the browser pages (/jobs, /jobs/{job_id}) with and without tokens, across a restart, and
the MCP App inside a minimal host that uses the official AppBridge and a real MCP client.
Screenshots land in build/screenshots."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.browser import CHROMIUM_ARGS, ROOT, require_browser, screenshot
from tests.mcp_helpers import LiveServer, call, jobs_file

TOKEN = "browser-token-0123456789"
ALICE, BOB = "alice-token-0123456789", "bob-token-0123456789ab"
LONG = {"prefix": "view-long-", "difficulty": 10}  # hours of hashing: never ends in a test
# An age-based Structs job: difficulty 10 now (age 50 of range 100), down to 6 by age 70,
# 20 blocks of 0.5 s: it waits or hashes for some seconds, then completes.
AGED = {
    "action_type": "struct_build_complete",
    "entity_id": "5-42",
    "block_start": 1000,
    "difficulty_range": 100,
    "current_block_height": 1050,
}
# Age 100 of range 1000: difficulty 22 now, and hundreds of blocks before a proof can be
# valid: it waits, with its plan (start, median and 95 % blocks), for minutes.
PLANNED = {**AGED, "difficulty_range": 1000, "current_block_height": 1100}
FAST_BLOCKS = {"BLOCK_TIME_SECONDS": "0.5"}
LIVE = ("queued", "waiting", "running")
SECOND = 1000  # ms, Playwright's unit


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright, path = require_browser()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 900, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], errors


def serving(tmp_path: Path, *args: str, **env: str) -> LiveServer:
    return LiveServer(tmp_path / "data", *args, **env)


def mcp(server: LiveServer, token: str | None, tool: str, **arguments: Any) -> dict[str, Any]:
    """One tool call through the SDK client, as an agent makes it (in a thread of its own:
    Playwright's sync API runs an event loop in the test's thread)."""

    async def run() -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(streamable_http_client(f"{server.origin}/mcp", http_client=http)) as client,
        ):
            return await call(client, tool, **arguments)

    with ThreadPoolExecutor(1) as thread:
        return thread.submit(anyio.run, run).result()


def stored_status(server: LiveServer, job_id: str) -> str:
    return str(jobs_file(server.data_dir)[job_id]["status"])


def badge(page: Any, statuses: tuple[str, ...], root: Any = None) -> str:
    """Wait until the job's status badge shows one of `statuses`; return it."""
    scope = root if root is not None else page
    pattern = re.compile(rf"^({'|'.join(statuses)})$")
    locator = scope.locator("[data-testid=job] [data-testid=status]")
    try:
        locator.filter(has_text=pattern).wait_for(timeout=30 * SECOND)
    except Exception:
        screenshot(page, "failed-waiting-for-" + "-".join(statuses))  # what it showed instead
        raise
    return str(locator.inner_text())


def check_numbers(view: Any, difficulty: int) -> None:
    """Hashes against hashes expected, a rate, best zeros against the target."""
    hashes = view.locator("[data-testid=hashes]")
    expected = f"{16**difficulty / 1e12:.2f} T"
    assert re.fullmatch(
        rf"[\d.]+( [kMGT])? of ~{re.escape(expected)} expected", hashes.inner_text()
    )
    rate = view.locator("[data-testid=hashrate]")
    rate.filter(has_text=re.compile(r"^[\d.]+ [kMG]?H/s$")).wait_for(timeout=10 * SECOND)
    assert re.fullmatch(
        rf"\d+ of {difficulty}", view.locator("[data-testid=best-zeros]").inner_text()
    )


def pause_and_resume(server: LiveServer, view: Any, page: Any, job_id: str) -> None:
    """Pause in the view: the store says paused. Resume: it runs again."""
    view.locator("[data-testid=pause]").click()
    badge(page, ("paused",), view)
    assert stored_status(server, job_id) == "paused"
    assert view.locator("[data-testid=resume]").is_visible()
    assert not view.locator("[data-testid=pause]").is_visible()
    view.locator("[data-testid=resume]").click()
    badge(page, LIVE, view)
    assert stored_status(server, job_id) in LIVE
    assert view.locator("[data-testid=pause]").is_visible()


def check_curve(view: Any) -> dict[str, int]:
    """The curve has one point per block of its range; returns its markers by name."""
    curve = view.locator("[data-testid=curve]")
    curve.wait_for(timeout=10 * SECOND)
    first, last = int(curve.get_attribute("data-from")), int(curve.get_attribute("data-to"))
    assert AGED["block_start"] <= first < last
    line = curve.locator("polyline")
    points = line.evaluate("line => line.points.numberOfItems")
    assert points == int(line.get_attribute("data-points")) == last - first + 1
    markers = curve.locator("[data-marker]")
    found = {}
    for i in range(markers.count()):
        marker = markers.nth(i)
        found[str(marker.get_attribute("data-marker"))] = int(marker.get_attribute("data-block"))
    assert all(first <= block <= last for block in found.values())
    return found


def check_plan(page: Any, view: Any) -> None:
    """A planned age-based job: its curve marks the block now, the planned start, and the
    median and 95 % blocks of a valid proof, in that order. (It waits for its start block,
    or, where the pool measures slow, as under a heavy load, hashes from now on.)"""
    badge(page, ("waiting", "running"), view)
    view.locator("[data-testid=curve] [data-marker=p95]").wait_for(state="attached")
    markers = check_curve(view)
    assert PLANNED["current_block_height"] <= markers["now"]
    assert markers["now"] <= markers["median"] <= markers["p95"]
    assert markers.get("start", markers["now"]) <= markers["median"]
    # A job that still waits for its start block has hashed nothing: it has no best proof,
    # so no "valid" marker. (A running one may: its best proof so far is valid from a later
    # block, SPEC Jobs.) Status and marker are read in one step, from one drawing.
    status, valid_marker = view.locator("[data-testid=job]").evaluate(
        "job => [job.dataset.status,"
        " job.querySelector('[data-testid=curve] [data-marker=valid]') !== null]"
    )
    if status == "waiting":
        assert not valid_marker


def check_proof(server: LiveServer, view: Any, page: Any, job_id: str) -> None:
    """Once found, the proof is shown: nonce, hash (which verifies), valid_from_block."""
    badge(page, ("completed",), view)
    proof = view.locator("[data-testid=proof]")
    assert proof.is_visible()
    record = jobs_file(server.data_dir)[job_id]
    nonce = view.locator("[data-testid=nonce]").inner_text()
    digest = view.locator("[data-testid=hash]").inner_text()
    prefix = record["job_data"]["prefix"]
    assert hashlib.sha256(f"{prefix}{nonce}".encode()).hexdigest() == digest
    assert record["result"]["proof_of_work"]["nonce"] == nonce
    shown = view.locator("[data-testid=valid-from-block]").inner_text()
    assert shown == str(record["valid_from_block"])
    assert view.locator("[data-testid=copy]").is_visible()
    assert not view.locator("[data-testid=pause]").is_visible()
    assert not view.locator("[data-testid=cancel]").is_visible()


def fits(page: Any) -> bool:
    """Nothing sticks out sideways (the tables scroll inside their own box)."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def photograph(page: Any, name: str) -> None:
    """Screenshots at 900 and 320 px, light and dark; each must fit its width."""
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for width in (900, 320):
            page.set_viewport_size({"width": width, "height": 900})
            assert fits(page), f"{name} overflows at {width} px ({scheme})"
            screenshot(page, f"{name}-{width}-{scheme}")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 900, "height": 900})


# -- the browser pages ------------------------------------------------------------------------


def test_the_page_with_a_token(tmp_path: Path, page: Any) -> None:
    with serving(tmp_path, POW_MCP_TOKEN=TOKEN, **FAST_BLOCKS) as server:
        long_job = mcp(server, TOKEN, "start_proof_of_work", **LONG)["job_id"]
        aged = mcp(server, TOKEN, "start_proof_of_work", **AGED)["job_id"]
        planned = mcp(server, TOKEN, "start_proof_of_work", **PLANNED)["job_id"]

        page.goto(f"{server.origin}/jobs")
        form = page.locator("#token-form")
        form.wait_for(state="visible")
        page.fill("[data-testid=token]", "not-the-token-0123456789")
        page.click("[data-testid=token-submit]")
        page.get_by_text("That token was refused").wait_for()
        page.fill("[data-testid=token]", TOKEN)
        page.click("[data-testid=token-submit]")
        rows = page.locator("[data-testid=job-row]")
        rows.filter(has_text=long_job).wait_for()
        listed = {rows.nth(i).get_attribute("data-job-id") for i in range(rows.count())}
        assert listed == {long_job, aged, planned}
        assert form.is_hidden()
        # Kept for the tab only: never in the address, never in a cookie.
        assert TOKEN not in page.url
        assert page.context.cookies() == []
        assert page.evaluate("sessionStorage.getItem('pow-mcp-token')") == TOKEN
        photograph(page, "page-jobs")

        page.click(f"a[href='/jobs/{long_job}']")
        badge(page, ("running",))
        assert page.locator("#token-form").is_hidden()  # the tab still has the token
        check_numbers(page, LONG["difficulty"])
        assert page.locator("[data-testid=plan]").is_hidden()  # a fixed difficulty: no curve
        pause_and_resume(server, page, page, long_job)
        photograph(page, "page-job")

        page.goto(f"{server.origin}/jobs/{planned}")
        check_plan(page, page)
        photograph(page, "page-job-planned")

        page.goto(f"{server.origin}/jobs/{aged}")
        check_proof(server, page, page, aged)
        assert check_curve(page)["valid"] == jobs_file(server.data_dir)[aged]["valid_from_block"]
        photograph(page, "page-job-aged")


def test_the_page_without_tokens_on_loopback(tmp_path: Path, page: Any) -> None:
    with serving(tmp_path) as server:
        job = mcp(server, None, "start_proof_of_work", prefix="open-", difficulty=2)["job_id"]
        page.goto(f"{server.origin}/jobs")
        page.locator(f"[data-testid=job-row][data-job-id='{job}']").wait_for()
        assert page.locator("#token-form").is_hidden()
        page.goto(f"{server.origin}/jobs/{job}")
        badge(page, ("completed",))
        assert page.locator("[data-testid=connection]").inner_text() == "Connected"


def test_another_principals_job_is_not_found(tmp_path: Path, page: Any) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice:{ALICE}\nbob:{BOB}\n")
    with serving(tmp_path, "--token-file", str(tokens)) as server:
        alices = mcp(server, ALICE, "start_proof_of_work", prefix="alice-secret-", difficulty=2)
        mine = mcp(server, BOB, "start_proof_of_work", prefix="bob-", difficulty=2)["job_id"]
        page.goto(f"{server.origin}/jobs")
        page.fill("[data-testid=token]", BOB)
        page.click("[data-testid=token-submit]")
        page.locator(f"[data-testid=job-row][data-job-id='{mine}']").wait_for()
        assert page.locator("[data-testid=job-row]").count() == 1  # not Alice's

        for job_id in (alices["job_id"], "pow_1704067200000_k3j9x0a1bq"):
            page.goto(f"{server.origin}/jobs/{job_id}")
            page.locator("[data-state=not-found]").wait_for()
            assert "was not found" in page.locator("[data-testid=message]").inner_text()
            assert page.locator("[data-testid=job]").count() == 0
            assert "alice-secret" not in page.content()


def test_the_page_picks_up_after_a_restart(tmp_path: Path, page: Any) -> None:
    with serving(tmp_path) as server:
        job = mcp(server, None, "start_proof_of_work", **LONG)["job_id"]
        page.goto(f"{server.origin}/jobs/{job}")
        badge(page, ("running",))
        connection = page.locator("[data-testid=connection]")
        server.kill()
        connection.filter(has_text="Lost the server").wait_for(timeout=30 * SECOND)
        assert page.locator("[data-testid=job]").get_attribute("data-status") == "running"
        server.start()
        connection.filter(has_text=re.compile("^Connected$")).wait_for(timeout=30 * SECOND)
        # Killed while it ran: back as failed, with the reason.
        badge(page, ("failed",))
        assert "interrupted" in page.locator("[data-testid=error]").inner_text()


# -- the MCP App in a host ------------------------------------------------------------------

HOST_PAGE = "/__tests__/host.html"  # served by the browser itself, on the server's origin


class Requests:
    """Every request the host page and its frames make: addresses, and the tools called."""

    def __init__(self, page: Any) -> None:
        self.urls: list[str] = []
        self.tools: list[str] = []
        page.on("request", self.seen)

    def seen(self, request: Any) -> None:
        self.urls.append(request.url)
        if (tool := tool_of(request)) is not None:
            self.tools.append(tool)


def tool_of(request: Any) -> str | None:
    """The tool a request calls, if it is a tools/call."""
    body = request.post_data_json if request.method == "POST" else None
    if isinstance(body, dict) and body.get("method") == "tools/call":
        return str(body["params"]["name"])
    return None


def open_host(page: Any, server: LiveServer, token: str, theme: str = "light") -> Requests:
    """The tests' host page on the server's origin (the MCP endpoint allows only that
    origin); returns what collects every request the page and its frames make."""
    host_html = (ROOT / "tests" / "browser" / "host.html").read_text()
    page.route(
        f"{server.origin}{HOST_PAGE}*",
        lambda route: route.fulfill(body=host_html, content_type="text/html"),
    )
    loaded = Requests(page)
    page.goto(f"{server.origin}{HOST_PAGE}?theme={theme}")
    page.locator("[data-testid=host-state]").filter(has_text="ready").wait_for()
    page.evaluate("token => window.powHost.connect(token, true)", token)
    return loaded


def show(page: Any, tool: str, arguments: dict[str, Any], theme: str = "light") -> Any:
    """Call `tool` through the host and show its view; the frame it is in."""
    shown = page.evaluate(
        "([tool, args, theme]) => window.powHost.show(tool, args, theme)", [tool, arguments, theme]
    )
    assert shown["resourceUri"] == "ui://pow-mcp/job" and shown["csp"] is None
    frames = page.locator(f"iframe[data-tool={tool}]")
    return page.frame_locator(f"iframe[data-tool={tool}] >> nth={frames.count() - 1}")


def test_the_app_in_a_host(tmp_path: Path, page: Any) -> None:
    with serving(tmp_path, POW_MCP_TOKEN=TOKEN, **FAST_BLOCKS) as server:
        loaded = open_host(page, server, TOKEN)
        meta = page.evaluate("() => window.powHost.toolMeta()")
        linked = {name for name, m in meta.items() if m and m.get("ui")}
        assert linked == {
            "start_proof_of_work",
            "start_proof_of_work_batch",
            "query_proof_of_work_status",
            "wait_for_job",
            "wait_for_jobs",
        }

        view = show(page, "start_proof_of_work", LONG)
        badge(page, ("running",), view)
        job_id = view.locator("[data-testid=job]").get_attribute("data-job-id")
        check_numbers(view, LONG["difficulty"])
        pause_and_resume(server, view, page, job_id)
        screenshot(page, "app-job")

        check_plan(page, show(page, "start_proof_of_work", PLANNED))
        screenshot(page, "app-job-planned")

        aged = show(page, "start_proof_of_work", AGED)
        badge(page, (*LIVE, "completed"), aged)
        aged_id = aged.locator("[data-testid=job]").get_attribute("data-job-id")
        check_proof(server, aged, page, aged_id)
        screenshot(page, "app-job-aged")

        jobs = [{"prefix": f"b{i}-", "difficulty": 2} for i in range(3)]
        batch = show(page, "start_proof_of_work_batch", {"jobs": jobs})
        rows = batch.locator("[data-testid=batch-row]")
        rows.first.wait_for()
        assert rows.count() == 3
        done = batch.locator("[data-testid=batch-row][data-status=completed]")
        done.nth(2).wait_for(timeout=30 * SECOND)

        # The host, its MCP endpoint, and nothing else: the views load nothing themselves.
        assert {re.sub(r"\?.*", "", url) for url in loaded.urls} == {
            f"{server.origin}{HOST_PAGE}",
            f"{server.origin}/mcp",
        }


def test_the_app_looks_at_most_once_a_second_and_not_out_of_view(tmp_path: Path, page: Any) -> None:
    """What keeps a hundred open views cheap for the pool: a view asks for its job at most
    once a second, and not at all while it is out of view."""
    with serving(tmp_path, POW_MCP_TOKEN=TOKEN) as server:
        requests = open_host(page, server, TOKEN)
        view = show(page, "start_proof_of_work", LONG)
        badge(page, ("running",), view)
        looks = requests.tools.count
        before = looks("query_proof_of_work_status")
        page.wait_for_timeout(5 * SECOND)  # a window to count in, not a wait for an event
        assert looks("query_proof_of_work_status") - before <= 5 + 1
        assert looks("wait_for_job") == 1  # the one wait for the end, still open
        # Out of view (the host scrolls far below it): no more looks.
        page.evaluate(
            "() => { const pad = document.createElement('div'); pad.style.height = '5000px';"
            " document.body.append(pad); window.scrollTo(0, document.body.scrollHeight); }"
        )
        page.wait_for_timeout(SECOND)  # a look already under way may still land
        hidden = looks("query_proof_of_work_status")
        page.wait_for_timeout(4 * SECOND)
        assert looks("query_proof_of_work_status") == hidden
        with page.expect_request(lambda r: tool_of(r) == "query_proof_of_work_status"):
            page.evaluate("() => window.scrollTo(0, 0)")  # back in view: a look at once


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_app_follows_the_hosts_theme_and_width(tmp_path: Path, page: Any, theme: str) -> None:
    with serving(tmp_path, POW_MCP_TOKEN=TOKEN, **FAST_BLOCKS) as server:
        open_host(page, server, TOKEN, theme)
        view = show(page, "start_proof_of_work", PLANNED, theme)
        badge(page, ("waiting", "running"), view)
        view.locator("[data-testid=curve]").wait_for()
        colours = view.locator("body").evaluate(
            "b => [getComputedStyle(b).color, getComputedStyle(b).backgroundColor]"
        )
        text, background = (luminance(c) for c in colours)
        assert (text > background) == (theme == "dark")
        assert contrast(text, background) >= 7
        for width in (900, 320):
            page.set_viewport_size({"width": width, "height": 900})
            frame = page.frame_locator("iframe[data-tool=start_proof_of_work]")
            assert frame.locator("html").evaluate("html => html.scrollWidth <= html.clientWidth"), (
                f"overflows at {width} px"
            )
            screenshot(page, f"app-job-aged-{width}-{theme}")


def luminance(css_colour: str) -> float:
    """Relative luminance (WCAG) of an `rgb(r, g, b)` colour."""
    channels = [int(v) / 255 for v in re.findall(r"\d+", css_colour)[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: float, b: float) -> float:
    light, dark = max(a, b), min(a, b)
    return (light + 0.05) / (dark + 0.05)
