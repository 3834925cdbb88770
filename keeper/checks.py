"""One line of `keeper doctor`: a question, whether it passed, and what was found."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from keeper.errors import KeeperError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


async def check(name: str, fn: Callable[[], Awaitable[str]]) -> Check:
    """Run ``fn``; its text on success, the error's on a KeeperError or ValueError."""
    try:
        return Check(name, True, await fn())
    except (KeeperError, ValueError) as e:
        return Check(name, False, str(e))
