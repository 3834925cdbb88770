"""``[backrun]``: liquidations placed right behind a pending price update, in its own block
(keeper.backrun). Needs ``[chain] ws_url`` (pending transactions are pushed over WebSocket)
and ``[liquidator] enabled``.

* ``submitter = "mempool"``: keeper's transactions are broadcast like any other, priced to sort
  right behind the update (its ``maxFeePerGas``, a tip no higher than its).
* ``submitter = "bundle"``: ``eth_sendBundle([update, keeper's...])`` to ``relay_url``
  (Flashbots' relay API), included whole and in order or not at all.
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from keeper.config_types import RpcUrl, _fail, _Model


class BackrunConfig(_Model):
    enabled: bool = False
    submitter: Literal["mempool", "bundle"] = "mempool"
    relay_url: RpcUrl | None = None  # http(s):// of the relay; may carry a key (never logged)

    @model_validator(mode="after")
    def _relay(self) -> BackrunConfig:
        if self.enabled and self.submitter == "bundle" and self.relay_url is None:
            raise _fail('submitter = "bundle" sends bundles to a relay: set relay_url', "relay_url")
        return self
