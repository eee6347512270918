"""The file locks under the JSON store, with Linux's own (`flock`) and with the portable
one that macOS and Windows use (portalocker; `POW_PORTABLE=1`): readers share, writers
exclude, and an instance lock is free again when its process is gone, however it died."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pow_mcp.store.jsonfile import locks
from pow_mcp.store.jsonfile.locks import InstanceLock, flocked, owner_alive, sweep_dead_instances

LOCKERS = {"flock": False, "portalocker": True}


@pytest.fixture(params=list(LOCKERS))
def locker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with each locker (the portable one is what macOS and Windows run)."""
    name: str = request.param
    monkeypatch.setattr(locks, "locker", locks.make_locker(LOCKERS[name]))
    assert locks.locker.name == name
    return name


def can_lock(path: Path, *, exclusive: bool) -> bool:
    """Would another holder get this lock now? (asks without waiting, then lets go)"""
    fd = os.open(path, os.O_RDWR)
    try:
        return locks.locker.lock(fd, exclusive=exclusive, wait=False)
    finally:
        os.close(fd)


def test_pow_portable_selects_the_portable_locker() -> None:
    code = "from pow_mcp.store.jsonfile import locks; print(locks.locker.name)"
    for value, name in [("1", "portalocker"), ("0", "flock"), ("", "flock")]:
        env = {**os.environ, "POW_PORTABLE": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.stdout.strip() == name, out.stderr


def test_readers_share_and_writers_exclude(tmp_path: Path, locker: str) -> None:
    path = tmp_path / "jobs.json.lock"
    with flocked(path, exclusive=False):
        assert can_lock(path, exclusive=False)
        assert not can_lock(path, exclusive=True)
        with flocked(path, exclusive=False):  # a second reader of the same process
            assert not can_lock(path, exclusive=True)
    assert can_lock(path, exclusive=True)
    with flocked(path, exclusive=True):
        assert not can_lock(path, exclusive=False)
        assert not can_lock(path, exclusive=True)
    assert can_lock(path, exclusive=True)
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


def test_a_writer_waits_for_the_reader_then_gets_the_lock(tmp_path: Path, locker: str) -> None:
    path = tmp_path / "jobs.json.lock"
    order: list[str] = []
    waiting = threading.Event()

    def writer() -> None:
        waiting.set()
        with flocked(path, exclusive=True):
            order.append("writer")

    with flocked(path, exclusive=False):
        thread = threading.Thread(target=writer)
        thread.start()
        assert waiting.wait(10)
        order.append("reader done")
    thread.join(10)
    assert not thread.is_alive()
    assert order == ["reader done", "writer"]


def test_an_instance_lock_is_held_until_released(tmp_path: Path, locker: str) -> None:
    lock = InstanceLock(tmp_path / "one.lock")
    lock.acquire()
    assert (tmp_path / "one.lock").read_text() == f"{os.getpid()}\n"
    with pytest.raises(BlockingIOError):
        InstanceLock(tmp_path / "one.lock").acquire()
    assert owner_alive(tmp_path, "one")
    assert sweep_dead_instances(tmp_path) == []
    lock.release()
    lock.release()  # twice is fine
    assert not (tmp_path / "one.lock").exists()
    assert not owner_alive(tmp_path, "one")


def test_a_left_lock_file_without_a_holder_is_a_gone_instance(tmp_path: Path, locker: str) -> None:
    (tmp_path / "gone.lock").write_text("12345\n")
    alive = InstanceLock(tmp_path / "alive.lock")
    alive.acquire()
    try:
        assert sweep_dead_instances(tmp_path) == ["gone"]
        assert not (tmp_path / "gone.lock").exists()
        assert (tmp_path / "alive.lock").exists()
    finally:
        alive.release()


def hold_instance_lock(path: Path, portable: bool) -> subprocess.Popen[str]:
    """A process that takes the instance lock at `path`, says which locker it used, and
    holds the lock until it dies."""
    code = (
        "import sys; from pathlib import Path; from pow_mcp.store.jsonfile import locks\n"
        "locks.InstanceLock(Path(sys.argv[1])).acquire()\n"
        "print(locks.locker.name, flush=True)\n"
        "sys.stdin.read()\n"
    )
    env = {**os.environ, "POW_PORTABLE": "1" if portable else "0"}
    return subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("holder", list(LOCKERS))
def test_an_instance_lock_is_free_once_its_process_is_sigkilled(
    tmp_path: Path, locker: str, holder: str
) -> None:
    child = hold_instance_lock(tmp_path / "victim.lock", LOCKERS[holder])
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == holder
        assert owner_alive(tmp_path, "victim")  # both lockers see each other's locks
        with pytest.raises(BlockingIOError):
            InstanceLock(tmp_path / "victim.lock").acquire()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not owner_alive(tmp_path, "victim")
    assert not (tmp_path / "victim.lock").exists()  # cleaned up by whoever found it gone


@pytest.fixture
def windows_unlink(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """`os.unlink` as on Windows: a file that is open cannot be removed."""
    real_unlink: Callable[[str | os.PathLike[str]], None] = os.unlink
    refused: list[str] = []

    def unlink(path: str | os.PathLike[str], *args: object, **kwargs: object) -> None:
        target = os.stat(path)
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.path.samestat(os.fstat(int(fd)), target):
                    refused.append(Path(path).name)
                    raise PermissionError(errno.EACCES, "open elsewhere", str(path))
            except OSError as exc:
                if isinstance(exc, PermissionError):
                    raise
        real_unlink(path)

    monkeypatch.setattr(os, "unlink", unlink)
    yield refused


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_lock_files_go_where_open_files_cannot_be_removed(
    tmp_path: Path, locker: str, windows_unlink: list[str]
) -> None:
    lock = InstanceLock(tmp_path / "mine.lock")
    lock.acquire()
    lock.release()
    assert not (tmp_path / "mine.lock").exists()
    (tmp_path / "dead.lock").write_text("1\n")
    assert not owner_alive(tmp_path, "dead")
    assert not (tmp_path / "dead.lock").exists()
    assert windows_unlink == ["mine.lock", "dead.lock"]  # the first tries were refused
    # A live holder's file stays, and so does its lock.
    held = InstanceLock(tmp_path / "held.lock")
    held.acquire()
    try:
        assert owner_alive(tmp_path, "held")
        assert (tmp_path / "held.lock").exists()
    finally:
        held.release()
