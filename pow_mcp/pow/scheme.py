"""The hashing scheme: messages, SHA-256 digests, leading zeros and verification."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

MAX_PREFIX_CHARS = 1024
MAX_ID_CHARS = 128
MAX_DIFFICULTY = 64

_NONCE_RE = re.compile(r"0|[1-9][0-9]*")


class ActionType(StrEnum):
    """Structs actions whose completion needs a proof of work."""

    STRUCT_BUILD_COMPLETE = "struct_build_complete"
    ORE_MINER_COMPLETE = "ore_miner_complete"
    ORE_REFINERY_COMPLETE = "ore_refinery_complete"
    PLANET_RAID_COMPLETE = "planet_raid_complete"


_ACTION_WORD = {
    ActionType.STRUCT_BUILD_COMPLETE: "BUILD",
    ActionType.ORE_MINER_COMPLETE: "MINE",
    ActionType.ORE_REFINERY_COMPLETE: "REFINE",
    ActionType.PLANET_RAID_COMPLETE: "RAID",
}


def _has_control_chars(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it is 1..1024 characters without control characters."""
    if not 1 <= len(prefix) <= MAX_PREFIX_CHARS:
        raise ValueError(f"prefix must be 1 to {MAX_PREFIX_CHARS} characters, got {len(prefix)}")
    if _has_control_chars(prefix):
        raise ValueError("prefix must not contain control characters (newlines, tabs, NUL, ...)")
    return prefix


def validate_entity_id(value: str, field: str = "entity_id") -> str:
    """Return `value` if it is a 1..128 character id without whitespace or control characters."""
    if not 1 <= len(value) <= MAX_ID_CHARS:
        raise ValueError(f"{field} must be 1 to {MAX_ID_CHARS} characters, got {len(value)}")
    if any(ch.isspace() for ch in value) or _has_control_chars(value):
        raise ValueError(f"{field} must not contain whitespace or control characters")
    return value


def validate_difficulty(difficulty: int) -> int:
    if not 1 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(
            f"difficulty must be an integer from 1 to {MAX_DIFFICULTY}, got {difficulty}"
        )
    return difficulty


def structs_prefix(
    action_type: ActionType | str,
    entity_id: str,
    block_start: int,
    target_id: str | None = None,
) -> str:
    """The message prefix the Structs game checks for `action_type`.

    For raids `entity_id` is the fleet and `target_id` the planet being raided.
    """
    action = ActionType(action_type)
    validate_entity_id(entity_id)
    if block_start < 0:
        raise ValueError(f"block_start must be an integer >= 0, got {block_start}")
    word = _ACTION_WORD[action]
    if action is ActionType.PLANET_RAID_COMPLETE:
        if target_id is None:
            raise ValueError("planet_raid_complete needs target_id (the planet being raided)")
        validate_entity_id(target_id, "target_id")
        return f"{entity_id}@{target_id}{word}{block_start}NONCE"
    if target_id is not None:
        raise ValueError(f"target_id is only used by planet_raid_complete, not {action.value}")
    return f"{entity_id}{word}{block_start}NONCE"


def message(prefix: str, nonce: int) -> bytes:
    """UTF-8 bytes of prefix + decimal nonce: what gets hashed."""
    if nonce < 0:
        raise ValueError("nonce must be >= 0")
    return (prefix + str(nonce)).encode()


def sha256_hex(prefix: str, nonce: int) -> str:
    return hashlib.sha256(message(prefix, nonce)).hexdigest()


def leading_zeros(hex_hash: str) -> int:
    """Number of leading '0' hex characters."""
    return len(hex_hash) - len(hex_hash.lstrip("0"))


def digest_leading_zeros(digest: bytes) -> int:
    """Leading zero hex digits of a raw 32-byte digest."""
    return (256 - int.from_bytes(digest, "big").bit_length()) // 4


def parse_nonce(text: str) -> int:
    """Parse a nonce given as a decimal string without sign or leading zeros."""
    if not _NONCE_RE.fullmatch(text):
        raise ValueError(
            f"nonce must be a decimal string of digits without sign or leading zeros, got {text!r}"
        )
    return int(text)


@dataclass(frozen=True, slots=True)
class Verification:
    valid: bool
    hash: str
    leading_zeros: int
    required_difficulty: int
    hash_matches: bool | None


def verify(
    prefix: str, nonce: int, difficulty: int, claimed_hash: str | None = None
) -> Verification:
    """Recompute the hash of prefix+nonce and check it against `difficulty`.

    A claimed hash that differs from the recomputed one makes the proof invalid.
    """
    digest = sha256_hex(prefix, nonce)
    zeros = leading_zeros(digest)
    matches = None if claimed_hash is None else claimed_hash.strip().lower() == digest
    valid = zeros >= difficulty and matches is not False
    return Verification(valid, digest, zeros, difficulty, matches)
