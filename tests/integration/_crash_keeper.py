"""Test helper, run as a subprocess: a live keeper (``build_keeper``) scans once and is
SIGKILLed right after the broadcast of the first transaction whose action key starts with
PREFIX (the TxManager ``hook`` test seam): the transaction is on its way, no receipt read.

    KEEPER_PRIVATE_KEY=0x... python _crash_keeper.py CONFIG PREFIX [STAGE [first|any]]

``first``: only an action's first step (``liq:<market>:<account>:<block>``), not its later steps.

Exit status -9 when the kill happened, 3 when nothing matched.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from keeper.config import load_config
from keeper.wiring import build_keeper


async def main(config: str, prefix: str, stage: str = "broadcast", step: str = "any") -> None:
    k = await build_keeper(load_config(Path(config), env=dict(os.environ)))

    def hook(at: str, row) -> None:
        first = row.action_key.count(":") == 3  # liq:<market>:<account>:<block>, not its :1 steps
        if at == stage and row.action_key.startswith(prefix) and (step == "any" or first):
            os.kill(os.getpid(), signal.SIGKILL)

    k.executor.tx._hook = hook
    head = await k.rpc.block_number()
    await k.engine.index(head)
    await k.engine.full_scan(head)
    await k.executor.drain()
    await k.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
    sys.exit(3)
