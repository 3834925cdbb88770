"""Test helper, run as a subprocess: send one ERC20 approve through a live TxManager and
SIGKILL this process at a chosen point (the TxManager ``hook`` test seam).

    KEEPER_PRIVATE_KEY=0x... python _crash_sender.py RPC_URL[,RPC_URL...] DB TOKEN SPENDER AMOUNT ACTION_KEY STAGE

STAGE: "journaled" (row committed, raw tx never broadcast) or "broadcast" (sent, the
journal not yet told). The exit status is -9 when the kill happened.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from keeper.chain.abi import addr_arg, call_data, uint_arg
from keeper.chain.rpc import Rpc
from keeper.config import Secret
from keeper.executors import ExecutorConfig, TxRequest
from keeper.executors.guard import AllowList
from keeper.executors.tx import build_tx_manager
from keeper.store import Store


async def main(rpc_url: str, db: str, token: str, spender: str, amount: str, key: str, stage: str) -> None:
    def hook(at: str, _row: object) -> None:
        if at == stage:
            os.kill(os.getpid(), signal.SIGKILL)

    rpc = Rpc(rpc_url.split(","))  # one endpoint, or several comma-separated
    manager = build_tx_manager(
        ExecutorConfig(poll_interval_s=0.02), mode="live",
        private_key=Secret(os.environ["KEEPER_PRIVATE_KEY"]), rpc=rpc, store=Store(Path(db)),
        allow=AllowList.of([(token, "approve(address,uint256)")]), hook=hook,
    )
    data = call_data("approve(address,uint256)", addr_arg(spender), uint_arg(int(amount)))
    await manager.send(TxRequest(to=token, data=data, purpose="crash test approve",
                                 action_key=key, max_cost_wei=10**17))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:8]))
    sys.exit(3)  # the hook did not fire
