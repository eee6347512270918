"""The compiled search kernels (pow_mcp.pow.kernels._sha256 through pow.kernels.native) against the
hashlib reference.

Every compiled kernel this machine can run is checked for results identical to
`HashlibKernel`: every prefix length from 0 to 300 bytes (one tail block, two tail blocks,
midstate over full prefix blocks) under both layouts, every digit-count rollover up to 2**64,
the 2**53 bound of the latest layout, carries out of every precomputation window and into the
first of two tail blocks, chunk boundaries, first-found nonces, difficulties above 8 and
ranges that run past 2**64 - 1 (the hashlib part of the split).
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
import shlex
import shutil
import sys
import sysconfig
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pow_mcp.pow.kernels import ChunkResult, HashlibKernel, available_kernels, get_kernel, native
from pow_mcp.pow.layout import LAYOUT_LATEST, LAYOUT_PLAIN, segments
from tests.conftest import TIMING

REFERENCE = HashlibKernel()
KERNELS = native.kernels()
NAMES = list(KERNELS)
U64 = 2**64
LIMIT = 2**53
C_SOURCE = Path(native.__file__).parent / "c" / "sha256_search.c"

# Starts just below every digit-count rollover, 9 -> 10 up to 10**19 - 1 -> 10**19, and 2**64.
BOUNDARIES = [10**k for k in range(1, 20)] + [U64]

Result = tuple[int | None, int, int, int, str]


def as_tuple(r: ChunkResult) -> Result:
    return (r.found_nonce, r.hashes, r.best_nonce, r.best_zeros, r.best_hash)


@functools.cache
def reference(
    prefix: bytes, start: int, count: int, difficulty: int, layout: int = LAYOUT_PLAIN
) -> Result:
    return as_tuple(REFERENCE.search(prefix, start, count, difficulty, layout))


def check(
    name: str, prefix: bytes, start: int, count: int, difficulty: int, layout: int = LAYOUT_PLAIN
) -> Result:
    got = as_tuple(KERNELS[name].search(prefix, start, count, difficulty, layout))
    want = reference(prefix, start, count, difficulty, layout)
    assert got == want, (
        f"{name}: prefix={prefix!r} start={start} count={count} D={difficulty} layout={layout}"
    )
    return got


def segment_edges(prefix: bytes) -> list[int]:
    """Positions where the latest layout moves to the next digit count, and its end."""
    edges, position = [], 0
    for _, count in segments(LAYOUT_LATEST, prefix):
        position += count
        edges.append(position)
    return edges


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def c_compiler() -> str | None:
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    return shutil.which(cc[0]) if cc else None


# --- the extension is there ----------------------------------------------------------------


@pytest.mark.skipif(
    sys.platform != "linux" or c_compiler() is None,
    reason="the extension is optional where there is no C compiler",
)
def test_extension_is_built_with_the_kernels_this_cpu_can_run() -> None:
    assert native._ext is not None, (
        "pow_mcp.pow.kernels._sha256 is missing: reinstall with `pip install -e .` (it needs "
        "a C compiler), or build it in place with `python setup.py build_ext --inplace`"
    )
    assert "scalar-c" in NAMES
    flags = cpu_flags()
    if "sha_ni" in flags:
        assert NAMES[0] == "sha-ni", NAMES
        assert "sha-ni+sse" in NAMES
    if "avx2" in flags:
        assert "avx2" in NAMES
    # "auto" is the first engine, or one that measured faster on this CPU
    # (tests/test_kernel_select.py).
    assert get_kernel("auto").name in {NAMES[0], *native.MEASURED}
    assert list(available_kernels()) == [*NAMES, "hashlib"]


# --- exhaustive small cases ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_prefix_length_and_digit_count(name: str) -> None:
    # Prefixes of 0..200 bytes put the nonce in one tail block, across two, or after 1..3
    # full prefix blocks (midstate); the starts cross each rollover 9 -> 10 .. 2**64.
    rng = random.Random(5)
    for length in range(201):
        prefix = rng.randbytes(length)
        for boundary in BOUNDARIES:
            start = max(0, boundary - rng.randint(1, 12))
            check(name, prefix, start, rng.randint(1, 24), rng.randint(1, 3))


@pytest.mark.parametrize("name", NAMES)
def test_small_nonces_every_message_length(name: str) -> None:
    rng = random.Random(6)
    for length in range(201):
        check(name, rng.randbytes(length), 0, 120, 64)


@pytest.mark.parametrize("name", NAMES)
def test_carries_reaching_the_first_of_two_tail_blocks(name: str) -> None:
    # With 47..63 prefix bytes in the tail, the digits of a 10-digit nonce straddle the two
    # tail blocks; carries out of the low digits rewrite digits in the first block.
    rng = random.Random(7)
    for rest in range(44, 64):
        for full_blocks in (0, 1):
            prefix = rng.randbytes(64 * full_blocks + rest)
            check(name, prefix, 1_234_567_889 - rng.randint(0, 9), 1500, 64)
            check(name, prefix, 9_999_998_990, 1100, 64)


@pytest.mark.parametrize("name", NAMES)
def test_structs_prefixes(name: str) -> None:
    for prefix in (b"5-42BUILD1000NONCE", b"3-1@2-9RAID123456NONCE", b"1-7REFINE99NONCE"):
        check(name, prefix, 0, 5000, 64)
        check(name, prefix, 999_999_000, 2000, 64)


# --- the latest layout ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_latest_layout_every_prefix_length(name: str) -> None:
    # Each move from one digit count to the next (a move from one block to two, from a window
    # at word 13 to one at word 0 of a second block, ...), the start and the 2**53 bound.
    rng = random.Random(11)
    for length in range(301):
        prefix = rng.randbytes(length)
        for edge in [0, *segment_edges(prefix)]:
            start = min(max(0, edge - rng.randint(1, 40)), LIMIT - 60)
            check(name, prefix, start, rng.randint(1, 60), rng.randint(1, 3), LAYOUT_LATEST)


@pytest.mark.parametrize("name", NAMES)
def test_latest_layout_refuses_positions_past_2_53(name: str) -> None:
    kernel = KERNELS[name]
    assert kernel.search(b"x" * 30, LIMIT - 10, 10, 64, LAYOUT_LATEST).hashes == 10
    for start, count in ((LIMIT - 10, 11), (LIMIT, 1), (U64, 5)):
        with pytest.raises(ValueError, match=r"2\*\*53 - 1"):
            kernel.search(b"x" * 30, start, count, 64, LAYOUT_LATEST)


@pytest.mark.parametrize("name", NAMES)
def test_chunk_boundaries_anywhere(name: str) -> None:
    # A job is cut into chunks at arbitrary positions; together they are one search.
    rng = random.Random(12)
    for prefix in (b"5-42BUILD1000NONCE", b"n" * 47, b"m" * 52, b"l" * 122):
        whole = KERNELS[name].search(prefix, 0, 200_000, 4, LAYOUT_LATEST)
        assert as_tuple(whole) == reference(prefix, 0, 200_000, 4, LAYOUT_LATEST)
        hashes, position, best = 0, 0, (-1, 0)
        while True:
            size = min(
                rng.choice([1, 3, 4, 7, 8, 100, 999, rng.randint(1, 30_000)]), 200_000 - position
            )
            r = KERNELS[name].search(prefix, position, size, 4, LAYOUT_LATEST)
            hashes += r.hashes
            position += size
            if r.best_zeros > best[0]:
                best = (r.best_zeros, r.best_nonce)
            if r.found_nonce is not None or position >= 200_000:
                break
        assert (r.found_nonce, hashes, best) == (
            whole.found_nonce,
            whole.hashes,
            (whole.best_zeros, whole.best_nonce),
        )


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_latest_layout_proofs(name: str, difficulty: int) -> None:
    for prefix in (b"5-42BUILD1000NONCE", b"3-1@2-9RAID123456NONCE", b"p" * 52, b"q" * 130):
        found, hashes, *_ = check(name, prefix, 0, 40 * 16**difficulty, difficulty, LAYOUT_LATEST)
        assert found is not None and hashes <= 40 * 16**difficulty


# --- every digest of long runs ------------------------------------------------------------
# `_sha256.digests` runs the same search loop but records every digest, so a wrong hash for
# any lane of any group shows up, not only a wrong best.


def hashlib_digests(prefix: bytes, start: int, count: int) -> bytes:
    return b"".join(
        hashlib.sha256(prefix + str(n).encode()).digest() for n in range(start, start + count)
    )


@pytest.mark.parametrize("name", NAMES)
def test_every_digest_of_long_runs(name: str) -> None:
    ext = native._ext
    assert ext is not None
    rng = random.Random(10)
    # Every prefix length (every layout of tail blocks); runs crossing carries out of every
    # window (2..6 digits) at 10 and 16 digits, and digit-count rollovers.
    for length in range(0, 301):
        prefix = rng.randbytes(length)
        runs = [
            (99_990, 40),
            (rng.randint(10**9, 10**10 - 3000), 2500),
            (rng.randint(10**15, LIMIT - 3000), 1100),
            (9_999_999_999_998_900, 1200),
        ]
        if length % 20 == 0:  # the C code stops at 2**64 - 1
            runs += [(max(0, b - 20), 40) for b in BOUNDARIES[:-1]] + [(U64 - 40, 40)]
        for start, count in runs:
            assert ext.digests(name, prefix, start, count) == hashlib_digests(
                prefix, start, count
            ), f"{name}: {length}-byte prefix from {start}"


# --- property tests ------------------------------------------------------------------------

starts = st.one_of(
    st.integers(min_value=0, max_value=10**12),
    st.integers(min_value=0, max_value=U64 + 100),
    st.builds(lambda b, off: max(0, b - off), st.sampled_from(BOUNDARIES), st.integers(1, 40)),
)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=150, deadline=None)
@given(
    prefix=st.binary(max_size=200),
    start=starts,
    count=st.integers(min_value=1, max_value=300),
    difficulty=st.integers(min_value=1, max_value=4),
)
def test_matches_hashlib_on_bytes(
    name: str, prefix: bytes, start: int, count: int, difficulty: int
) -> None:
    check(name, prefix, start, count, difficulty)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=100, deadline=None)
@given(
    text=st.text(max_size=120),
    start=starts,
    count=st.integers(min_value=1, max_value=300),
    difficulty=st.integers(min_value=1, max_value=10),
)
def test_matches_hashlib_on_utf8_text(
    name: str, text: str, start: int, count: int, difficulty: int
) -> None:
    check(name, text.encode(), start, count, difficulty)


# --- first found, best, high difficulties --------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_same_first_found_nonce(name: str, difficulty: int) -> None:
    # The starts skip most of the way to the first difficulty-5 proofs (at 1_311_089 and
    # 4_000_928_982), to keep the hashlib reference quick.
    for prefix, start in ((b"5-42BUILD1000NONCE", 1_000_000), (b"x" * 60, 4_000_700_000)):
        found, hashes, *_ = check(name, prefix, start, 40 * 16**difficulty, difficulty)
        assert found is not None and hashes == found - start + 1


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("difficulty", [6, 8, 9, 10, 64])
def test_best_when_nothing_is_found(name: str, difficulty: int) -> None:
    # Difficulties above 8 look past the first state word; nothing is found in these ranges,
    # so the best (earliest with the most zeros) and the count must still agree.
    found, hashes, *_ = check(name, b"abc-", 10_000, 60_000, difficulty)
    assert found is None and hashes == 60_000


# Nonces whose hashes have 8 and 9 leading hex zeros (the whole first state word is zero), found
# once with the sha-ni kernel and checked with hashlib here.
PLANTED_PREFIX = b"pow-mcp-zeros-"
PLANTED = {8: 1_255_615_774, 9: 8_170_912_913}


def planted_digest(nonce: int) -> str:
    return hashlib.sha256(PLANTED_PREFIX + str(nonce).encode()).hexdigest()


def test_planted_hashes_have_the_expected_zeros() -> None:
    for zeros, nonce in PLANTED.items():
        digest = planted_digest(nonce)
        assert digest.startswith("0" * zeros) and digest[zeros] != "0", digest


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("zeros", sorted(PLANTED))
def test_eight_and_more_zeros(name: str, zeros: int) -> None:
    nonce = PLANTED[zeros]
    for difficulty in range(1, 12):
        found, _, best_nonce, best_zeros, best_hash = check(
            name, PLANTED_PREFIX, nonce - 1500, 3000, difficulty
        )
        if difficulty > 5:  # nothing else in the range comes close
            assert (found, best_nonce, best_zeros, best_hash) == (
                nonce if difficulty <= zeros else None,
                nonce,
                zeros,
                planted_digest(nonce),
            )


# --- nonces past 2**64 - 1 -----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_ranges_past_the_c_limit(name: str) -> None:
    rng = random.Random(8)
    for _ in range(200):
        prefix = rng.randbytes(rng.randint(0, 80))
        check(name, prefix, U64 - rng.randint(1, 30), rng.randint(1, 60), rng.randint(1, 2))
    check(name, b"abc", U64, 50, 2)
    check(name, b"abc", U64 + 10**6, 50, 2)
    check(name, b"abc", 10**30, 50, 2)


@pytest.mark.parametrize("name", NAMES)
def test_found_and_best_across_the_split(name: str) -> None:
    # Find prefixes where the proof (or only the best) lies in the hashlib part past 2**64 - 1.
    rng = random.Random(9)
    found_after, best_after = 0, 0
    while found_after < 5 or best_after < 5:
        prefix = rng.randbytes(10)
        found, _, best_nonce, *_ = check(name, prefix, U64 - 4, 10, 1)
        found_after += found is not None and found >= U64
        _, _, best_nonce, *_ = check(name, prefix, U64 - 4, 10, 3)
        best_after += best_nonce >= U64


# --- tables in the C code, against their derivation ----------------------------------------


def windows() -> list[tuple[int, int]]:
    """(j0, j1) of every window the driver makes: one or two message words."""
    return [(j0, j1) for j0 in range(16) for j1 in (j0, j0 + 1) if j1 < 16]


def varying(j0: int, j1: int) -> tuple[set[int], dict[int, int]]:
    """The schedule words that depend on words j0..j1, and which terms of each do."""
    var, terms = set(range(j0, j1 + 1)), {}
    for t in range(16, 64):
        bits = sum(1 << i for i, u in enumerate((t - 16, t - 15, t - 7, t - 2)) if u in var)
        if bits:
            var.add(t)
            terms[t] = bits
    return var, terms


def c_define(name: str) -> str:
    match = re.search(rf"#define {name}\b(.*?)(?<!\\)\n", C_SOURCE.read_text(), re.S)
    assert match, name
    return match.group(1)


def test_plan_promises_hold_for_every_window() -> None:
    var_from, terms_from = int(c_define("PLAN_VAR_FROM")), int(c_define("PLAN_TERMS_FROM"))
    for j0, j1 in windows():
        var, terms = varying(j0, j1)
        assert set(range(var_from, 64)) <= var, (j0, j1)
        assert all(terms[t] == 15 for t in range(terms_from, 64)), (j0, j1)


def test_every_sha_ni_plan_has_its_compiled_copy() -> None:
    # compress_shani has one copy per (round pairs skipped, groups 0..5 that vary); a window
    # without one would silently take the slow path.
    listed = {
        (int(h), int(low, 16))
        for h, low in re.findall(r"X\((\d+), (0x[0-9A-F]+)\)", c_define("SHANI_PLANS"))
    }
    needed = set()
    for j0, j1 in windows():
        var, _ = varying(j0, j1)
        groups = {t // 4 for t in var if t < 64}
        assert groups >= set(range(6, 16))
        needed.add(((j0 - j0 % 2) // 2, sum(1 << g for g in groups if g < 6)))
    assert listed == needed


@pytest.mark.parametrize("name", NAMES)
def test_rounds_per_hash(name: str) -> None:
    ext = native._ext
    assert ext is not None

    def rounds(length: int, run: int) -> float:
        first, _ = segments(LAYOUT_LATEST, b"x" * length)[run]
        return ext.rounds_per_hash(name, length, len(str(first)))

    # The first digit count of the latest layout: one block, 64 rounds less those before the
    # window (fewer with longer prefixes), or digits across into a second block (the first
    # again once in 10**7 nonces or less often, the window further in the second).
    assert all(50 <= rounds(n, 0) <= 64 for n in range(0, 55))
    assert all(60 <= rounds(n, 0) < 64.01 for n in range(55, 64))
    assert rounds(18, 0) < rounds(0, 0)
    # After the few one-block nonces of the 45-48 band: two blocks.
    assert all(rounds(n, 55 - n) >= 113 for n in (45, 46, 47, 48))
    assert rounds(49, 6) == pytest.approx(64 + 6.4, abs=0.1)  # one digit in the second block
    if name == "sha-ni":
        assert rounds(18, 0) == pytest.approx(56, abs=0.02)  # Structs: 8 rounds skipped


# --- the Python wrapper and the extension's own checks -------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_bad_arguments(name: str) -> None:
    kernel = KERNELS[name]
    for args in ((-1, 1, 1), (0, 0, 1), (0, 1, 0), (0, 1, 65)):
        with pytest.raises(ValueError):
            kernel.search(b"x", *args)


@pytest.mark.skipif(native._ext is None, reason="the extension is not built")
def test_extension_rejects_what_it_cannot_do() -> None:
    ext = native._ext
    assert ext is not None
    with pytest.raises(ValueError):
        ext.search("no-such-engine", b"x", 0, 1, 1)
    with pytest.raises(OverflowError):
        ext.search("scalar-c", b"x", U64 - 1, 2, 1)
    with pytest.raises(OverflowError):
        ext.search("scalar-c", b"x", -1, 2, 1)
    with pytest.raises(ValueError):
        ext.search("scalar-c", b"x", 0, 0, 1)
    with pytest.raises(ValueError):
        ext.search("scalar-c", b"x", 0, 1, 65)
    with pytest.raises(ValueError):
        native.CompiledKernel("no-such-engine")
    with pytest.raises(ValueError):
        ext.rounds_per_hash("scalar-c", 10, 21)
    assert ext.search("scalar-c", b"x", U64 - 1, 1, 1)[1] == 1


@TIMING
@pytest.mark.parametrize("name", NAMES)
def test_releases_the_gil(name: str) -> None:
    kernel = KERNELS[name]
    # The fastest of three timings: one slowed by a busy machine (other tests run beside this
    # one) would make the search too short to count ticks in.
    took = []
    for _ in range(3):
        began = time.perf_counter()
        kernel.search(b"gil", 0, 100_000, 64)
        took.append(time.perf_counter() - began)
    count = int(100_000 * 0.4 / min(took))  # about 0.4 s of hashing, more on a busy machine
    thread = threading.Thread(target=kernel.search, args=(b"gil", 0, count, 64))
    ticks = 0
    thread.start()
    while thread.is_alive():
        time.sleep(0.005)
        ticks += 1
    thread.join()
    assert ticks >= 10  # the main thread ran all along


# --- choosing a kernel ---------------------------------------------------------------------


def test_auto_picks_the_fastest_and_hashlib_can_be_forced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POW_KERNEL", raising=False)
    assert get_kernel().name in {[*NAMES, "hashlib"][0], *native.MEASURED}
    monkeypatch.setenv("POW_KERNEL", "hashlib")
    forced = get_kernel()
    assert isinstance(forced, HashlibKernel)
    assert as_tuple(forced.search(b"abc-", 0, 3000, 3)) == reference(b"abc-", 0, 3000, 3)


def test_without_the_extension_only_hashlib_is_left(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(native, "_ext", None)
    monkeypatch.setattr(native, "_import_error", "No module named 'pow_mcp.pow.kernels._sha256'")
    monkeypatch.setattr("pow_mcp.pow.kernels._warned", False)
    monkeypatch.delenv("POW_KERNEL", raising=False)
    assert native.kernels() == {}
    assert list(available_kernels()) == ["hashlib"]
    with caplog.at_level("WARNING", logger="pow_mcp.pow.kernels"):
        assert get_kernel().name == "hashlib"
        get_kernel()
    # Said once, with how to get the fast path.
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "C compiler" in warnings[0] and "reinstall" in warnings[0]
    assert "a pow-mcp wheel built for this platform" in warnings[0]
    assert "pip install --force-reinstall --no-cache-dir /path/to/pow-mcp" in warnings[0]
