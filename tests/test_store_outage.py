"""The outage log on its own, with a clock the test moves: what is one cause, what a counted
line and the line of the database's return say. (With a real PostgreSQL that stops and
starts: tests/test_store_faults.py and tests/test_server_faults.py.)"""

from __future__ import annotations

import logging

import pytest

from pow_mcp.store.outage import Outage

log = logging.getLogger("pow_mcp.test_outage")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_a_cause_is_its_template_and_speaks_again_after_the_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    outage = Outage("db", clock=clock)
    for second in range(25):
        clock.now = second
        outage.warning(log, "renewal failed: %s", f"error {second}")  # one cause, many texts
        outage.warning(log, "job %s: could not save: %s", "a", "x", about="a")
        outage.warning(log, "job %s: could not save: %s", "b", "x", about="b")
    assert messages(caplog) == [
        "renewal failed: error 0",
        "job a: could not save: x",
        "job b: could not save: x",
        "renewal failed: error 10 (9 more times in 10 s)",
        "job a: could not save: x (9 more times in 10 s)",
        "job b: could not save: x (9 more times in 10 s)",
        "renewal failed: error 20 (9 more times in 10 s)",
        "job a: could not save: x (9 more times in 10 s)",
        "job b: could not save: x (9 more times in 10 s)",
    ]
    assert all(record.levelno == logging.WARNING for record in caplog.records)
    assert {record.name for record in caplog.records} == {log.name}
    assert {record.filename for record in caplog.records} == {"test_store_outage.py"}


def test_a_cause_that_comes_back_late_says_how_long_its_repeats_took(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outage = Outage("db", clock=clock)
    outage.warning(log, "cleanup failed: %s", "100% full")
    clock.now = 3
    outage.warning(log, "cleanup failed: %s", "100% full")
    clock.now = 300
    outage.warning(log, "cleanup failed: %s", "100% full")
    assert messages(caplog) == [
        "cleanup failed: 100% full",
        "cleanup failed: 100% full (1 more time in 300 s)",
    ]


def test_the_database_back_is_one_line_and_the_next_outage_speaks_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    outage = Outage("postgresql://u:***@h/db", clock=clock)
    outage.reachable()  # no outage: nothing to say
    clock.now = 100
    outage.failed()
    outage.warning(log, "renewal failed")
    for second in range(101, 104):
        clock.now = second
        outage.failed()
        outage.warning(log, "renewal failed")
    clock.now = 142.4
    outage.reachable()
    outage.reachable()
    clock.now = 143
    outage.failed()
    outage.warning(log, "renewal failed")  # a new outage: no window left over
    clock.now = 143.3
    outage.reachable()
    assert messages(caplog) == [
        "renewal failed",
        "database reachable again after 42 s (postgresql://u:***@h/db); "
        "3 repeated warnings were held back",
        "renewal failed",
        "database reachable again after 0.3 s (postgresql://u:***@h/db)",
    ]
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO] * 2


def test_a_failure_older_than_the_databases_answer_opens_no_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Operations end on worker threads in any order: one that tried while the database was
    # starting up may report after one that reached it. That is no new outage.
    caplog.set_level(logging.INFO)
    clock = Clock()
    outage = Outage("db", clock=clock)
    clock.now = 10
    outage.failed()
    clock.now = 20
    outage.reachable()  # the database is back
    clock.now = 20.5
    outage.failed(began=19.9)  # tried before the answer above, reported after it
    clock.now = 21
    outage.reachable()
    clock.now = 22
    outage.failed(began=21.5)  # tried after the last answer: an outage again
    clock.now = 23
    outage.reachable()
    assert messages(caplog) == [
        "database reachable again after 10 s (db)",
        "database reachable again after 1.0 s (db)",
    ]


def test_an_answer_to_an_attempt_older_than_the_outage_does_not_end_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A database stopping lets some answers through after the first failure was seen: an
    # attempt made before that failure says nothing of now.
    caplog.set_level(logging.INFO)
    clock = Clock()
    outage = Outage("db", clock=clock)
    clock.now = 10
    outage.failed()  # the notification connection lost
    clock.now = 10.01
    outage.reachable(began=9.99)  # a query sent just before, answered just after
    clock.now = 30
    outage.reachable(began=29.5)  # tried after the outage began: it is over
    assert messages(caplog) == ["database reachable again after 20 s (db)"]
