"""Unprofitable now: a sent, unmined liquidation whose profit fell below the policy's minimum.

``StaleWatch`` (keeper.executors.burst) simulates the unmined liquidations at each new head H
(one ``eth_simulateV1`` at H, in nonce order). Those that still succeed are held here with
their gas used and logs until the engine's market of their watch has reached H (``ActionExecutor.latest``,
set by the tick of H: the same block as the simulation, so the logs and the prices agree).
Then each is valued as its receipt would be (``adapter.realized`` on the simulated logs, at
H's prices) minus gas at the current fees: the gas used times what its latest transaction
would pay in the next block (``min(maxFeePerGas, base fee bound + tip)``), in USD at the price
book's gas coin price. Below the policy's minimum (``[liquidator] min_profit_*``, the bar
the plan cleared) the watch replaces it with a cancel, like a stale one; the reason names
the numbers. A held simulation whose market moved past H is dropped: the next head's is
newer. Without ``eth_simulateV1`` (no logs) nothing is held.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keeper.executors import TxOutcome


@dataclass
class Held:
    at: int  # the head simulated
    base_fee: int  # the next block's base fee bound at ``at``
    rows: list[tuple[Any, int, list[dict[str, Any]]]] = field(default_factory=list)  # item, gas used, logs


class ProfitCheck:
    def __init__(self, ex: Any):  # the ActionExecutor (latest markets, prices, journal, minimum)
        self.ex = ex
        self.held: Held | None = None

    def hold(self, at: int, base_fee: int, items: list[Any], results: list[tuple[int, str | None]],
             logs: list[list[dict[str, Any]]]) -> None:
        """Keep what simulated fine at ``at`` until its market is known at ``at``."""
        if len(logs) != len(items):
            self.held = None
            return
        self.held = Held(at, base_fee, [(i, gas, lg) for i, (gas, why), lg in zip(items, results, logs)
                                        if why is None and i.adapter is not None])

    def due(self, alive: dict[str, Any]) -> list[tuple[Any, str]]:
        """(item, why) for each held liquidation still in ``alive`` (tx hash -> item) that its
        market, now known at the held head, says is below the minimum."""
        held = self.held
        if held is None:
            return []
        out, wait = [], []
        for i, gas, logs in held.rows:
            if i.row is None or i.row.hash not in alive:
                continue
            market = self.ex.latest.get(i.d.market)
            if market is None or market.block < held.at:
                wait.append((i, gas, logs))
                continue
            if market.block == held.at and (why := self.unprofitable(i, gas, logs, market, held)):
                out.append((i, why))
        held.rows = wait
        if not wait:
            self.held = None
        return out

    def unprofitable(self, i: Any, gas: int, logs: list[dict[str, Any]], market: Any, held: Held) -> str:
        """Why ``i`` no longer pays (empty when it does, or when it cannot be valued)."""
        ex = self.ex
        group = ex.tx.journal.group(ex.tx.address, i.row.nonce)
        fees = (group[-1] if group else i.row).fees
        fee = min(fees.max_fee_per_gas, held.base_fee + fees.priority_fee_per_gas)
        gas_usd = ex.prices.gas_cost_usd(gas * fee)
        if gas_usd is None:
            return ""
        outcome = i.adapter.realized(market, i.d, [TxOutcome(i.key, "mined", gas_used=gas, logs=tuple(logs))],
                                     ex.prices)
        if not outcome.ok or outcome.gross_profit_usd_e8 is None:
            return ""
        profit, floor = outcome.gross_profit_usd_e8 - gas_usd, ex.min_profit_usd_e8
        if profit >= floor:
            return ""
        return (f"unprofitable at block {held.at}: profit {profit} USD e8 after gas {gas_usd} "
                f"(gas {gas} at {fee} wei) < minimum {floor} (planned {i.d.profit_usd_e8})")
