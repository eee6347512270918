"""Checking a proof without a job: the same message arguments as a start, plus the nonce."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult

from pow_mcp.pow.difficulty import valid_from_block
from pow_mcp.pow.scheme import parse_nonce, verify
from pow_mcp.server.schemas import VerifyAnswer
from pow_mcp.server.tools.args import VerifyArguments, flat_tool
from pow_mcp.server.tools.common import answer, hints


def tools() -> list[Tool]:
    @flat_tool(VerifyArguments)
    async def verify_proof_of_work(
        args: VerifyArguments,
    ) -> Annotated[CallToolResult, VerifyAnswer]:
        """Recompute the SHA-256 of the same message start_proof_of_work would hash, plus
        `nonce`, and say whether it meets `difficulty` (or, age-based, the difficulty at `age`
        or `current_block_height`). Instant; no job is created."""
        prefix = args.message
        check = verify(prefix, parse_nonce(args.nonce), args.required, args.hash)
        valid_from = None
        if args.difficulty_range is not None:
            assert args.block_start is not None
            valid_from = valid_from_block(
                args.block_start, check.leading_zeros, args.difficulty_range
            )
        model = VerifyAnswer(
            valid=check.valid,
            hash=check.hash,
            message=prefix + args.nonce,
            leading_zeros=check.leading_zeros,
            required_difficulty=check.required_difficulty,
            hash_matches=check.hash_matches,
            valid_from_block=valid_from,
        )
        verdict = "VALID" if check.valid else "NOT valid"
        text = (
            f"{verdict}: sha256({prefix + args.nonce!r}) = {check.hash} has "
            f"{check.leading_zeros} leading zeros; {check.required_difficulty} required"
        )
        if check.hash_matches is False:
            text += "; the given hash does not match"
        if valid_from is not None:
            text += f"; accepted from block {valid_from}"
        return answer(model, text + ".")

    return [
        Tool.from_function(
            verify_proof_of_work,
            title="Check a nonce",
            annotations=hints(read_only=True, destructive=False, idempotent=True),
        )
    ]
