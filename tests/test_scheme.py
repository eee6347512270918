"""The hashing scheme and Structs messages, against the SPEC and a plain hashlib reference."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pow_mcp.pow.scheme import (
    digest_leading_zeros,
    leading_zeros,
    message,
    parse_nonce,
    sha256_hex,
    structs_prefix,
    validate_entity_id,
    validate_prefix,
    verify,
)
from tests.reference import ref_hash, ref_zeros


def test_spec_build_example() -> None:
    prefix = structs_prefix("struct_build_complete", "5-42", 1000)
    assert prefix == "5-42BUILD1000NONCE"
    assert message(prefix, 12345) == b"5-42BUILD1000NONCE12345"


def test_spec_raid_example_puts_fleet_at_planet() -> None:
    prefix = structs_prefix("planet_raid_complete", "9-30", 712049, target_id="2-1")
    assert message(prefix, 452083) == b"9-30@2-1RAID712049NONCE452083"


@pytest.mark.parametrize(
    ("action", "word"),
    [
        ("struct_build_complete", "BUILD"),
        ("ore_miner_complete", "MINE"),
        ("ore_refinery_complete", "REFINE"),
    ],
)
def test_each_structs_action_word(action: str, word: str) -> None:
    assert structs_prefix(action, "1-7", 0) == f"1-7{word}0NONCE"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("planet_raid_complete", "9-30", 1), "needs target_id"),
        (("ore_miner_complete", "9-30", 1, "2-1"), "only used by planet_raid_complete"),
        (("struct_build_complete", "a b", 1), "whitespace"),
        (("struct_build_complete", "", 1), "1 to 128"),
        (("struct_build_complete", "x" * 129, 1), "1 to 128"),
        (("struct_build_complete", "5-42", -1), ">= 0"),
        (("teleport", "5-42", 1), "teleport"),
    ],
)
def test_bad_structs_inputs_say_what_is_wrong(args: tuple[object, ...], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        structs_prefix(*args)  # type: ignore[arg-type]


def test_prefix_limits() -> None:
    assert validate_prefix("a" * 1024) == "a" * 1024
    for bad in ("", "a" * 1025, "abc\n", "tab\there", "nul\x00"):
        with pytest.raises(ValueError):
            validate_prefix(bad)
    assert validate_prefix("ünïcode✓") == "ünïcode✓"
    with pytest.raises(ValueError):
        validate_entity_id("a\u00a0b")  # non-breaking space is whitespace too


@given(st.text(min_size=1, max_size=60), st.integers(min_value=0, max_value=2**70))
def test_hash_matches_plain_hashlib(prefix: str, nonce: int) -> None:
    expected = ref_hash((prefix + str(nonce)).encode())
    assert sha256_hex(prefix, nonce) == expected
    assert leading_zeros(expected) == ref_zeros(expected)


@given(st.binary(min_size=32, max_size=32))
def test_digest_zero_count_matches_hex(digest: bytes) -> None:
    assert digest_leading_zeros(digest) == ref_zeros(digest.hex())


def test_zero_count_edges() -> None:
    assert digest_leading_zeros(bytes(32)) == 64
    assert digest_leading_zeros(b"\x0f" + bytes(31)) == 1
    assert digest_leading_zeros(b"\x00\x10" + bytes(30)) == 2


def test_verify_accepts_a_real_proof_and_rejects_a_wrong_hash() -> None:
    # abc-554171 hashes to five leading zeros (found by `pow-mcp solve --prefix abc- -d 5`).
    good = hashlib.sha256(b"abc-554171").hexdigest()
    result = verify("abc-", 554171, 5, claimed_hash=good.upper())
    assert (result.valid, result.leading_zeros, result.hash_matches) == (True, 5, True)
    assert not verify("abc-", 554171, 6).valid
    wrong = verify("abc-", 554171, 5, claimed_hash="0" * 64)
    assert (wrong.valid, wrong.hash_matches) == (False, False)
    assert verify("abc-", 554171, 5).hash_matches is None


@pytest.mark.parametrize("text", ["0", "7", "12345", "18446744073709551616"])
def test_parse_nonce_accepts_decimal(text: str) -> None:
    assert str(parse_nonce(text)) == text


@pytest.mark.parametrize("text", ["", "-1", "+1", "01", "1.0", "1e3", " 1", "0x10", "١٢"])
def test_parse_nonce_rejects_everything_else(text: str) -> None:
    with pytest.raises(ValueError, match="decimal string"):
        parse_nonce(text)
