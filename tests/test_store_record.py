"""The job record: shape, timestamps, lenient loading of foreign files, copies, the codec."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pow_mcp.store.jsonfile.codec import (
    Contents,
    Entry,
    UnreadableFile,
    encode_line,
    load_record,
    parse,
    render,
)
from pow_mcp.store.record import (
    TERMINAL,
    Checkpoint,
    FutureRecordError,
    JobRecord,
    JobResult,
    JobStatus,
    Progress,
    ProofOfWork,
    WaitingInfo,
    copy_record,
)
from tests.store_helpers import make_record


def records_of(contents: Contents) -> dict[str, JobRecord]:
    found = {}
    for job_id in contents.entries:
        record = contents.record(job_id)
        assert record is not None
        found[job_id] = record
    return found


def cache_of(records: dict[str, JobRecord]) -> Contents:
    return Contents(
        {k: encode_line(k, v) for k, v in records.items()},
        {k: Entry.of(v) for k, v in records.items()},
    )


def test_statuses_and_terminal_set() -> None:
    assert [s.value for s in JobStatus] == [
        "queued",
        "waiting",
        "running",
        "paused",
        "completed",
        "failed",
        "cancelled",
    ]
    assert {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED} == TERMINAL


def test_a_full_record_serialises_to_the_spec_shape() -> None:
    record = make_record(
        JobStatus.COMPLETED,
        completed_at=datetime(2026, 11, 23, 10, 30, 0, 123000, tzinfo=UTC),
        progress=Progress(hashes=10, hashrate=2.5, best_zeros=4, eta_seconds=None),
        result=JobResult(
            proof_of_work=ProofOfWork(
                hash="0000ab",
                nonce=12345,  # type: ignore[arg-type]  # ints are accepted and kept as text
                iterations=12346,
                valid=True,
                difficulty_met=True,
                difficulty=4,
                computation_time_ms=5.5,
            )
        ),
        waiting_info=WaitingInfo(
            current_age=3, current_difficulty=9, start_difficulty=5, blocks_remaining=7
        ),
        valid_from_block=1042,
        checkpoint=4096,
        kernel="native",
    )
    data = json.loads(record.model_dump_json())
    assert data["completed_at"] == "2026-11-23T10:30:00.123000Z"
    assert data["created_at"].endswith("Z")
    assert data["result"]["proof_of_work"]["nonce"] == "12345"
    assert set(data) >= {
        "job_id",
        "status",
        "created_at",
        "started_at",
        "updated_at",
        "completed_at",
        "job_data",
        "progress",
        "error",
        "result",
        "waiting_info",
        "valid_from_block",
        "owner",
        "checkpoint",
        "kernel",
        "attempts",
        "recoveries",
        "tags",
        "batch_id",
        "blocked_by",
    }
    assert set(data["progress"]) >= {"hashes", "hashrate", "best_zeros", "eta_seconds"}
    assert JobRecord.model_validate_json(record.model_dump_json()) == record


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-01T00:00:05.000Z",
        "2024-01-01T00:00:05Z",
        "2024-01-01T00:00:05+00:00",
        "2024-01-01T02:00:05+02:00",
        "2024-01-01T00:00:05",  # naive: taken as UTC
        "2024-01-01 00:00:05",
        1704067205000,  # unix milliseconds (JavaScript Date.now())
        1704067205,  # unix seconds
        1704067205.0,
        "1704067205000",
    ],
)
def test_timestamps_load_leniently_as_utc(value: object) -> None:
    record = JobRecord.model_validate({"job_id": "j", "status": "queued", "created_at": value})
    assert record.created_at == datetime(2024, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert record.created_at.tzinfo is UTC


def test_non_utc_datetimes_are_stored_as_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    record = make_record(created=datetime(2026, 1, 1, 12, 0, tzinfo=plus_two))
    assert record.created_at == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert json.loads(record.model_dump_json())["created_at"] == "2026-01-01T10:00:00Z"


STRUCTS_MCP_RECORD = {
    "job_id": "pow_1704067200000_abc",
    "status": "completed",
    "started_at": "2024-01-01T00:00:00.000Z",
    "completed_at": "2024-01-01T00:00:05.000Z",
    "result": {
        "proof_of_work": {"hash": "000abc", "nonce": "12345", "iterations": 12346, "valid": True}
    },
    "error": None,
}


def test_a_structs_mcp_record_loads() -> None:
    record = load_record("pow_1704067200000_abc", STRUCTS_MCP_RECORD)
    assert record.status is JobStatus.COMPLETED
    assert record.created_at == datetime(2024, 1, 1, tzinfo=UTC)  # from started_at
    assert record.updated_at == datetime(2024, 1, 1, 0, 0, 5, tzinfo=UTC)  # from completed_at
    assert record.result is not None and record.result.proof_of_work is not None
    assert record.result.proof_of_work.nonce == "12345"
    assert record.result.proof_of_work.difficulty is None
    assert record.owner is None and record.job_data == {}


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("processing", JobStatus.RUNNING),
        ("pending", JobStatus.QUEUED),
        ("canceled", JobStatus.CANCELLED),
        ("COMPLETED", JobStatus.COMPLETED),
        ("error", JobStatus.FAILED),
    ],
)
def test_foreign_status_words_are_mapped_and_kept(word: str, status: JobStatus) -> None:
    record = load_record("j", {"job_id": "j", "status": word, "started_at": 1704067200000})
    assert record.status is status
    assert record.model_extra == {"legacy_status": word}


def test_a_status_nobody_knows_is_a_newer_versions_record() -> None:
    with pytest.raises(FutureRecordError, match="archived"):
        load_record("j", {"status": "archived", "started_at": 1704067200})


def test_a_newer_versions_record_is_kept_byte_for_byte() -> None:
    good = make_record()
    future = '"pow_2_future":{"job_id":"pow_2_future","status":"archived","x":[1,{"y":2}]}'
    data = render([encode_line(good.job_id, good), future])
    contents = parse(data).contents
    assert list(contents.entries) == [good.job_id]  # not a job this version can show
    assert contents.render() == data  # ...but kept exactly as it was
    with pytest.raises(FutureRecordError):
        contents.record("pow_2_future")


def test_a_bare_nonce_checkpoint_loads_as_a_position() -> None:
    record = load_record("j", {"status": "failed", "created_at": 1, "checkpoint": 4096})
    assert record.checkpoint == Checkpoint(layout=1, position=4096, in_flight=[])


def test_creation_time_falls_back_to_the_job_id() -> None:
    record = load_record("pow_1704067200000_abcdefghij", {"status": "failed"})
    assert record.created_at == datetime(2024, 1, 1, tzinfo=UTC)


def test_odd_shapes_are_kept_aside_not_rejected() -> None:
    odd = {"progress": 42, "result": "oops", "error": {"code": 7}, "job_data": None}
    record = load_record("j", {"status": "failed", **odd})
    assert record.progress == Progress()
    assert record.result is None
    assert record.error == '{"code": 7}'
    assert record.job_data == {}
    assert record.model_extra == {"legacy_progress": 42, "legacy_result": "oops"}


@pytest.mark.parametrize(
    "raw",
    [5, "text", None, [], {"job_id": "j"}, {"job_id": "other", "status": "queued"}],
)
def test_values_that_are_not_records_are_rejected(raw: Any) -> None:
    with pytest.raises(ValueError, match=r"."):
        load_record("j", raw)


def test_unknown_fields_survive_a_round_trip() -> None:
    raw = {
        "job_id": "j",
        "status": "running",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "future_field": {"a": [1, 2]},
        "progress": {"hashes": 1, "gpu": "x"},
        "result": {"proof_of_work": {"nonce": "7", "salt": "s"}, "extra": 1},
        "waiting_info": {"current_age": 1, "note": "n"},
    }
    record = load_record("j", raw)
    again = json.loads(record.model_dump_json())
    assert again["future_field"] == {"a": [1, 2]}
    assert again["progress"]["gpu"] == "x"
    assert again["result"]["proof_of_work"]["salt"] == "s"
    assert again["result"]["extra"] == 1
    assert again["waiting_info"]["note"] == "n"


def test_copies_are_independent() -> None:
    record = load_record(
        "j",
        {
            "status": "completed",
            "created_at": 1,
            "job_data": {"nested": {"k": [1]}},
            "result": {"proof_of_work": {"nonce": "1", "x": {"y": 1}}},
            "waiting_info": {"current_age": 1},
            "top": {"z": 1},
        },
    )
    clone = copy_record(record)
    assert clone == record and clone.model_fields_set == record.model_fields_set
    clone.job_data["nested"]["k"].append(2)
    clone.progress.hashes = 99
    assert clone.result is not None and clone.result.proof_of_work is not None
    clone.result.proof_of_work.nonce = "2"
    assert clone.waiting_info is not None
    clone.waiting_info.current_age = 5
    assert clone.model_extra is not None
    clone.model_extra["top"]["z"] = 2
    assert record.job_data == {"nested": {"k": [1]}}
    assert record.progress.hashes == 0
    assert record.result is not None and record.result.proof_of_work is not None
    assert record.result.proof_of_work.nonce == "1"
    assert record.waiting_info is not None and record.waiting_info.current_age == 1
    assert record.model_extra == {"top": {"z": 1}}


def test_non_finite_rates_do_not_break_the_file() -> None:
    record = make_record(progress=Progress(hashrate=float("inf"), eta_seconds=float("nan")))
    contents = parse(render([encode_line(record.job_id, record)])).contents
    loaded = records_of(contents)[record.job_id]
    assert loaded.progress.hashrate == 0.0 and loaded.progress.eta_seconds is None


# -- the codec ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b'{"a": {"job_id": "a", "status": "queued"', "not valid JSON"),
        (b"\x00\xffgarbage", "not UTF-8"),
        (b"[]", "list"),
        (b"null", "NoneType"),
        (b'"text"', "str"),
        (b'{"a": 1, "b": [2]}', "no value is a job record"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_unreadable_files_are_reported(data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableFile, match=reason):
        parse(data)


def test_some_bad_values_are_reported_with_the_good_kept() -> None:
    good = make_record()
    data = json.dumps({good.job_id: json.loads(good.model_dump_json()), "bad": 5}).encode()
    parsed = parse(data)
    assert list(parsed.contents.entries) == [good.job_id]
    assert set(parsed.bad) == {"bad"}


def test_an_empty_object_is_an_empty_store() -> None:
    assert parse(b"{}").contents.lines == {}
    assert parse(b"{\n}\n").contents.lines == {}


records_strategy = st.lists(
    st.builds(
        make_record,
        st.sampled_from(list(JobStatus)),
        progress=st.builds(
            Progress,
            hashes=st.integers(0, 2**70),
            hashrate=st.floats(allow_nan=False, allow_infinity=False),
            best_zeros=st.integers(0, 64),
        ),
        error=st.none() | st.text(),
        job_data=st.dictionaries(st.text(), st.integers() | st.text() | st.booleans()),
    ),
    max_size=8,
)


@given(records_strategy, st.data())
def test_reading_with_a_cache_equals_reading_from_scratch(
    records: list[JobRecord], data: st.DataObject
) -> None:
    lines = {r.job_id: encode_line(r.job_id, r) for r in records}
    file_bytes = render(lines.values())
    fresh = parse(file_bytes).contents
    assert records_of(fresh) == {r.job_id: r for r in records}
    assert fresh.lines == lines
    # A cache holding some of these records, some stale versions and some others.
    some = st.lists(st.sampled_from(records), unique_by=lambda r: r.job_id) if records else None
    cached = data.draw(some) if some is not None else []
    stale = {r.job_id: r.model_copy(update={"error": "stale"}) for r in cached[::2]}
    known_records = {r.job_id: stale.get(r.job_id, r) for r in cached}
    known_records["gone"] = make_record(job_id="gone")
    again = parse(file_bytes, cache_of(known_records)).contents
    assert records_of(again) == records_of(fresh)
    assert list(again.entries) == list(fresh.entries)
    assert again.entries == fresh.entries
    assert again.lines == fresh.lines


def test_a_foreign_layout_is_read_whole_even_with_a_cache() -> None:
    record = make_record()
    known = cache_of({record.job_id: record})
    pretty = json.dumps({record.job_id: json.loads(record.model_dump_json())}, indent=2) + "\n"
    assert records_of(parse(pretty.encode(), known).contents) == {record.job_id: record}
