"""Carry out decisions: the only code that turns a TopUp or a Liquidate into transactions.

Every action: (approve what is missing) -> TxManager.send, which simulates first, journals
before it signs and sends, and in ``dry_run`` stops after the simulation. One action per
account at a time; an action key (market, account, block) is never sent twice.

* Liquidate: a simulation that reverts, or a mined revert, means the race was lost (someone
  was first or the position healed): recorded as ``liquidation.lost``, never retried
  blindly (the next tick decides again from fresh state). A mined liquidation is confirmed
  by its ``LiquidationCall`` event; expected and realized collateral and profit are logged
  and stored.
* TopUp: after the receipt the Pool's own health factor is read again and recorded; a
  partial top-up (the wallet could not cover the plan) raises an alert.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from eth_utils import to_checksum_address

from keeper.chain.abi import topic, word
from keeper.chain.rpc import Rpc
from keeper.decide import Decision, Liquidate, TopUp
from keeper.decide_others import CometAbsorb, MorphoLiquidate, OtherTopUp
from keeper.executors import others
from keeper.errors import ExecutionError, SimulationReverted, SourceError
from keeper.executors import TxOutcome, TxRequest
from keeper.executors.tx import TxManager
from keeper.model import AaveMarketState
from keeper.protocols import aave_v3_tx as enc
from keeper.store import Store
from keeper.units import mul_div_down

log = structlog.get_logger("keeper.executors")
LIQUIDATION_CALL = topic("LiquidationCall(address,address,address,uint256,uint256,address,bool)")
DEFICIT_CREATED = topic("DeficitCreated(address,address,uint256)")  # Aave 3.3+ (user, debtAsset)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
  action_key TEXT PRIMARY KEY, kind TEXT NOT NULL, market TEXT NOT NULL, account TEXT NOT NULL,
  block INTEGER NOT NULL, result TEXT NOT NULL, expected TEXT, realized TEXT, tx_hash TEXT,
  detail TEXT, created_at REAL NOT NULL)
"""


@dataclass(frozen=True, slots=True)
class ActionResult:
    action_key: str
    kind: str  # "liquidate" | "top_up"
    result: str  # "done" | "lost" | "dry_run" | "failed" | "skipped"
    tx_hash: str | None = None
    expected: int | None = None  # liquidate: collateral tokens; top_up: health factor (wad)
    realized: int | None = None
    detail: str = ""


class ActionExecutor:
    def __init__(self, tx: TxManager, rpc: Rpc, store: Store, native_symbol: str = "WETH",
                 on_alert: Callable[[Decision, ActionResult], None] | None = None):
        self.tx, self.rpc, self.store, self.native_symbol = tx, rpc, store, native_symbol
        self.on_alert = on_alert or (lambda _d, _r: None)
        self.in_flight: set[str] = set()  # "market:account"
        self.tasks: set[asyncio.Task] = set()
        self._approvals: dict[str, asyncio.Lock] = {}
        self.comet_base: dict[str, str] = {}  # comet (lower) -> base token, for buyCollateral
        with store.transaction() as db:
            db.execute(_SCHEMA)

    def submit(self, decisions: list[Decision], market: AaveMarketState) -> int:
        """Start each decision as its own task (the tick does not wait for receipts)."""
        started = 0
        for d in decisions:
            slot = f"{d.market}:{getattr(d, 'account', 'absorb')}"
            if slot in self.in_flight:
                continue
            self.in_flight.add(slot)
            task = asyncio.create_task(self._run(d, market, slot))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            started += 1
        return started

    async def drain(self, timeout_s: float = 60.0) -> None:
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout_s)

    async def _run(self, d: Decision, market: AaveMarketState, slot: str) -> ActionResult:
        try:
            if isinstance(d, Liquidate):
                r = await self.liquidate(d, market)
            elif isinstance(d, TopUp):
                r = await self.top_up(d, market)
            elif isinstance(d, MorphoLiquidate):
                r = await others.morpho_liquidate(self, d)
            elif isinstance(d, OtherTopUp):
                r = await others.other_top_up(self, d)
            else:
                r = await others.comet_absorb(self, d)
        except (ExecutionError, SourceError) as e:
            kind = "top_up" if isinstance(d, (TopUp, OtherTopUp)) else "liquidate"
            r = ActionResult(self.key(d), kind, "failed", detail=str(e))
            log.warning("action.failed", action_key=r.action_key, error=str(e))
        finally:
            self.in_flight.discard(slot)
        self._record(d, r)
        if r.result in ("done", "lost", "failed", "dry_run"):
            self.on_alert(d, r)
        return r

    @staticmethod
    def key(d) -> str:
        if isinstance(d, CometAbsorb):
            return f"absorb:{d.market}:{d.block}"
        kind = {Liquidate: "liq", TopUp: "topup", MorphoLiquidate: "mliq", OtherTopUp: "topup"}[type(d)]
        return f"{kind}:{d.market}:{d.account}:{d.block}"

    async def _ensure_allowance(self, token: str, spender: str, amount: int, key: str,
                                max_cost_wei: int) -> TxOutcome | None:
        """The Pool (allow-listed, the only spender) gets an unlimited allowance once per
        token, as liquidation bots do: per-action approvals would race each other (each
        ``approve`` overwrites the last) when several actions use one token at once."""
        lock = self._approvals.setdefault(token.lower(), asyncio.Lock())
        async with lock:
            have = word(await self.rpc.call(token, enc.allowance(self.tx.address, spender)))
            if have >= amount:
                return None
            out = await self.tx.send(TxRequest(
                to=token, data=enc.approve(spender, enc.UINT256_MAX),
                purpose=f"approve the Pool for {key}", action_key=f"approve:{token}:{key}",
                max_cost_wei=max_cost_wei))
            if out.status == "reverted":
                raise ExecutionError(f"approve for {key} reverted ({out.hash})")
            return out

    # -- liquidation ----------------------------------------------------------------
    async def liquidate(self, d: Liquidate, market: AaveMarketState) -> ActionResult:
        key, q = self.key(d), d.quote
        if self.tx.already_done(key):
            return ActionResult(key, "liquidate", "skipped", detail="already sent")
        native = market.by_symbol(self.native_symbol) if _has(market, self.native_symbol) else None
        budget = mul_div_down(max(d.profit_base, 0), 10**18, native.price_base) if native else 0
        logc = log.bind(action_key=key, account=d.account, collateral=q.collateral_asset,
                        debt=q.debt_asset, debt_to_repay=q.debt_to_repay,
                        expected_collateral=q.collateral_to_receive, expected_profit_base=d.profit_base)
        hf_now = word(await self.rpc.call(market.pool, enc.account_data(d.account), "latest"), 5)
        if hf_now >= 10**18:  # healed or liquidated by someone else since the tick: spend nothing
            logc.info("liquidation.lost", reason=f"health factor is {hf_now} at the head, not < 1")
            return ActionResult(key, "liquidate", "lost", expected=q.collateral_to_receive,
                                detail=f"position no longer liquidatable (hf {hf_now})")
        approve = await self._ensure_allowance(q.debt_asset, market.pool, q.debt_to_repay, key, budget)
        if approve is not None and approve.dry_run:
            logc.info("liquidation.dry_run", reason="decided; approve simulated, not sent")
            return ActionResult(key, "liquidate", "dry_run", expected=q.collateral_to_receive)
        req = TxRequest(to=market.pool, data=enc.liquidation_call(q.collateral_asset, q.debt_asset,
                        d.account, q.debt_to_repay if q.debt_to_cover is None else q.debt_to_cover),
                        purpose=f"liquidate {d.account}",
                        action_key=key, max_cost_wei=budget)
        out = await self.send_liquidation(req, logc, q.collateral_to_receive)
        if isinstance(out, ActionResult):
            return out
        event = _liquidation_event(out, d.account)
        if event is None:
            raise ExecutionError(f"{key}: mined without a LiquidationCall event ({out.hash})")
        repaid, seized = event
        coll = market.by_asset(q.collateral_asset)
        debt = market.by_asset(q.debt_asset)
        gas_base = mul_div_down(out.cost_wei or 0, native.price_base, 10**18) if native else 0
        realized = (mul_div_down(seized, coll.price_base, 10**coll.config.decimals)
                    - -(-repaid * debt.price_base // 10**debt.config.decimals) - gas_base)
        logc.info("liquidation.done", tx=out.hash, realized_collateral=seized, repaid=repaid,
                  realized_profit_base=realized, gas_cost_wei=out.cost_wei,
                  deficit_created=_deficit_created(out, d.account))
        return ActionResult(key, "liquidate", "done", out.hash, q.collateral_to_receive, seized,
                            detail=f"expected_profit_base={d.profit_base} realized_profit_base={realized}")

    async def send_liquidation(self, req: TxRequest, logc, expected: int) -> TxOutcome | ActionResult:
        """Send a liquidation; a mined success comes back as the TxOutcome, anything else as
        its ActionResult: lost (simulation reverted, or mined but reverted) or dry_run."""
        key = req.action_key
        try:
            out = await self.tx.send(req)
        except SimulationReverted as e:
            logc.info("liquidation.lost", reason=f"simulation reverted: {e}")
            return ActionResult(key, "liquidate", "lost", expected=expected, detail=str(e))
        if out.dry_run:
            logc.info("liquidation.dry_run", reason="decided and simulated; mode is dry_run")
            return ActionResult(key, "liquidate", "dry_run", expected=expected)
        if not out.ok:
            logc.info("liquidation.lost", reason="mined but reverted", tx=out.hash)
            return ActionResult(key, "liquidate", "lost", out.hash, expected)
        return out

    # -- top-up ---------------------------------------------------------------------
    async def top_up(self, d: TopUp, market: AaveMarketState) -> ActionResult:
        key, p = self.key(d), d.plan
        if self.tx.already_done(key):
            return ActionResult(key, "top_up", "skipped", detail="already sent")
        logc = log.bind(action_key=key, account=d.account, action=p.action, asset=p.asset,
                        amount=p.amount, expected_hf=p.expected_hf_wad, partial=p.partial)
        cap = 10**18  # a top-up protects the user's own loan: gas is bounded by the guard's caps
        approve = await self._ensure_allowance(p.asset, market.pool, p.amount, key, cap)
        if approve is not None and approve.dry_run:
            logc.info("topup.dry_run", reason="decided; approve simulated, not sent")
            return ActionResult(key, "top_up", "dry_run", expected=p.expected_hf_wad)
        data = (enc.supply(p.asset, p.amount, d.account) if p.action == "supply"
                else enc.repay(p.asset, p.amount, d.account))
        out = await self.tx.send(TxRequest(to=market.pool, data=data, purpose=f"{p.action} for {d.account}",
                                           action_key=key, max_cost_wei=cap))
        if out.dry_run:
            logc.info("topup.dry_run", reason="decided and simulated; mode is dry_run")
            return ActionResult(key, "top_up", "dry_run", expected=p.expected_hf_wad)
        if not out.ok:
            raise ExecutionError(f"{key}: top-up reverted ({out.hash})")
        raw = await self.rpc.call(market.pool, enc.account_data(d.account), "latest")
        hf_after = word(raw, 5)
        logc.info("topup.done", tx=out.hash, health_factor_after=hf_after)
        return ActionResult(key, "top_up", "done", out.hash, p.expected_hf_wad, hf_after,
                            detail="partial: wallet short" if p.partial else "")

    def _record(self, d, r: ActionResult) -> None:
        account = getattr(d, "account", None) or ",".join(getattr(d, "accounts", ()))
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO actions VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (r.action_key, r.kind, d.market, account, d.block, r.result,
                 None if r.expected is None else str(r.expected),
                 None if r.realized is None else str(r.realized), r.tx_hash, r.detail, time.time()))


def _has(market: AaveMarketState, symbol: str) -> bool:
    return any(r.symbol.upper() == symbol.upper() for r in market.reserves)


def _deficit_created(out: TxOutcome, user: str) -> int:
    """Aave 3.3+: debt burned as deficit for ``user`` in this receipt (sum over reserves)."""
    total = 0
    for lg in out.logs:
        topics = lg.get("topics", [])
        if len(topics) > 1 and bytes.fromhex(topics[0][2:]) == DEFICIT_CREATED \
                and topics[1][-40:].lower() == user[2:].lower():
            total += word(bytes.fromhex(lg["data"][2:]), 0)
    return total


def _liquidation_event(out: TxOutcome, user: str) -> tuple[int, int] | None:
    """(debtToCover, liquidatedCollateralAmount) of the receipt's LiquidationCall for ``user``."""
    for lg in out.logs:
        topics = lg.get("topics", [])
        if topics and bytes.fromhex(topics[0][2:]) == LIQUIDATION_CALL:
            if to_checksum_address("0x" + topics[3][-40:]) == to_checksum_address(user):
                data = bytes.fromhex(lg["data"][2:])
                return word(data, 0), word(data, 1)
    return None
