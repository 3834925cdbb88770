"""Morpho Blue ``liquidate`` and Compound V3 ``absorb`` + ``buyCollateral``, through the same
TxManager (simulation first, journal before each send, dry_run stops after simulating)."""

from __future__ import annotations

from eth_abi import encode
from eth_utils import to_checksum_address

from keeper.chain.abi import addr_arg, call_data, selector, topic, uint_arg, word
from keeper.decide_others import CometAbsorb, MorphoLiquidate
from keeper.errors import ExecutionError, SimulationReverted
from keeper.executors import TxRequest
from keeper.executors.guard import APPROVE, AllowList

MORPHO_LIQUIDATE = "liquidate((address,address,address,address,uint256),address,uint256,uint256,bytes)"
COMET_ABSORB = "absorb(address,address[])"
COMET_BUY = "buyCollateral(address,uint256,uint256,address)"
MORPHO_LIQUIDATE_EVENT = topic("Liquidate(bytes32,address,address,uint256,uint256,uint256,uint256,uint256)")
ABSORB_DEBT = topic("AbsorbDebt(address,address,uint256,uint256)")


def morpho_allow_list(morpho: str, loan_tokens: list[str]) -> AllowList:
    return AllowList.of([(morpho, MORPHO_LIQUIDATE)] + [(t, APPROVE) for t in loan_tokens])


def comet_allow_list(comet: str, base_token: str) -> AllowList:
    return AllowList.of([(comet, COMET_ABSORB), (comet, COMET_BUY), (base_token, APPROVE)])


async def morpho_liquidate(ex, d: MorphoLiquidate):
    from keeper.executors.actions import ActionResult, log

    key = f"mliq:{d.market}:{d.account}:{d.block}"
    if ex.tx.already_done(key):
        return ActionResult(key, "liquidate", "skipped", detail="already sent")
    logc = log.bind(action_key=key, account=d.account, seized=d.seized_assets,
                    repaid=d.repaid_assets, expected_profit_loan=d.profit_loan)
    approve = await ex._ensure_allowance(d.params.loan_token, d.morpho, d.repaid_assets, key,
                                         d.budget_wei)
    if approve is not None and approve.dry_run:
        logc.info("liquidation.dry_run", reason="decided; approve simulated, not sent")
        return ActionResult(key, "liquidate", "dry_run", expected=d.seized_assets)
    data = selector(MORPHO_LIQUIDATE) + encode(
        ["(address,address,address,address,uint256)", "address", "uint256", "uint256", "bytes"],
        [d.params.as_tuple(), d.account, d.seized_assets, 0, b""])
    out = await ex.send_liquidation(TxRequest(to=d.morpho, data=data, purpose=f"liquidate {d.account} on Morpho",
                                              action_key=key, max_cost_wei=d.budget_wei),
                                    logc, d.seized_assets)
    if isinstance(out, ActionResult):
        return out
    seized = None
    for lg in out.logs:
        t = lg.get("topics", [])
        if t and bytes.fromhex(t[0][2:]) == MORPHO_LIQUIDATE_EVENT and \
                to_checksum_address("0x" + t[3][-40:]) == to_checksum_address(d.account):
            seized = word(bytes.fromhex(lg["data"][2:]), 2)
    if seized is None:
        raise ExecutionError(f"{key}: mined without a Liquidate event ({out.hash})")
    logc.info("liquidation.done", tx=out.hash, realized_collateral=seized, protocol="morpho_blue")
    return ActionResult(key, "liquidate", "done", out.hash, d.seized_assets, seized,
                        detail=f"expected_profit_loan={d.profit_loan}")


async def comet_absorb(ex, d: CometAbsorb):
    from keeper.executors.actions import ActionResult, log

    key = f"absorb:{d.market}:{d.block}"
    if ex.tx.already_done(key):
        return ActionResult(key, "liquidate", "skipped", detail="already sent")
    me = ex.tx.address
    logc = log.bind(action_key=key, accounts=list(d.accounts), expected_profit_base=d.profit_base)
    data = selector(COMET_ABSORB) + encode(["address", "address[]"], [me, list(d.accounts)])
    try:
        out = await ex.tx.send(TxRequest(to=d.comet, data=data, purpose=f"absorb {len(d.accounts)} on Comet",
                                         action_key=key, max_cost_wei=d.budget_wei))
    except SimulationReverted as e:
        logc.info("liquidation.lost", reason=f"absorb simulation reverted: {e}")
        return ActionResult(key, "liquidate", "lost", detail=str(e))
    if out.dry_run:
        logc.info("liquidation.dry_run", reason="absorb simulated; mode is dry_run")
        return ActionResult(key, "liquidate", "dry_run")
    if not out.ok:
        return ActionResult(key, "liquidate", "lost", out.hash)
    absorbed = sum(1 for lg in out.logs if lg.get("topics")
                   and bytes.fromhex(lg["topics"][0][2:]) == ABSORB_DEBT)
    reserves = word(await ex.rpc.call(d.comet, call_data("getReserves()")), 0)
    target = word(await ex.rpc.call(d.comet, call_data("targetReserves()")), 0)
    bought = 0
    if reserves < 2**255 and reserves >= target:
        logc.info("collateral.not_for_sale", reason="reserves at or above target", reserves=reserves)
    else:
        for asset, base, min_out in d.buys:
            bkey = f"buy:{key}:{asset}"
            await ex._ensure_allowance(_base_token(d, ex), d.comet, base, bkey, d.budget_wei)
            data = call_data(COMET_BUY, addr_arg(asset), uint_arg(min_out), uint_arg(base), addr_arg(me))
            try:
                b = await ex.tx.send(TxRequest(to=d.comet, data=data, purpose=f"buy {asset} from Comet",
                                               action_key=bkey, max_cost_wei=d.budget_wei))
                bought += 1 if b.ok else 0
            except SimulationReverted as e:
                logc.info("collateral.buy_lost", asset=asset, reason=str(e))
    logc.info("liquidation.done", tx=out.hash, protocol="compound_v3", absorbed=absorbed, bought=bought)
    return ActionResult(key, "liquidate", "done", out.hash, len(d.accounts), absorbed,
                        detail=f"expected_profit_base={d.profit_base} buys={bought}")


def _base_token(d: CometAbsorb, ex) -> str:
    return ex.comet_base[d.comet.lower()]


MORPHO_REPAY = "repay((address,address,address,address,uint256),uint256,uint256,address,bytes)"
MORPHO_SUPPLY_COLLATERAL = "supplyCollateral((address,address,address,address,uint256),uint256,address,bytes)"
COMET_SUPPLY_TO = "supplyTo(address,address,uint256)"
PARAMS = "(address,address,address,address,uint256)"


def morpho_topup_allow_list(morpho: str, tokens: list[str]) -> AllowList:
    return AllowList.of([(morpho, MORPHO_REPAY), (morpho, MORPHO_SUPPLY_COLLATERAL)]
                        + [(t, APPROVE) for t in tokens])


def comet_topup_allow_list(comet: str, tokens: list[str]) -> AllowList:
    return AllowList.of([(comet, COMET_SUPPLY_TO)] + [(t, APPROVE) for t in tokens])


async def other_top_up(ex, d):
    """Morpho repay / supplyCollateral or Comet supplyTo on the account's behalf."""
    from keeper.executors.actions import ActionResult, log

    key, p = f"topup:{d.market}:{d.account}:{d.block}", d.plan
    if ex.tx.already_done(key):
        return ActionResult(key, "top_up", "skipped", detail="already sent")
    logc = log.bind(action_key=key, account=d.account, protocol=d.protocol, action=p.action,
                    amount=p.amount, expected_hf=p.expected_hf_wad, partial=p.partial)
    cap = 10**18  # the guard's per-tx and per-day caps bound what a top-up may spend
    approve = await ex._ensure_allowance(p.asset, d.target, p.amount, key, cap)
    if approve is not None and approve.dry_run:
        logc.info("topup.dry_run", reason="decided; approve simulated, not sent")
        return ActionResult(key, "top_up", "dry_run", expected=p.expected_hf_wad)
    if d.protocol == "morpho_blue" and p.action == "repay":
        assets, shares = (0, d.repay_shares) if d.repay_shares else (p.amount, 0)
        data = selector(MORPHO_REPAY) + encode([PARAMS, "uint256", "uint256", "address", "bytes"],
                                               [d.params.as_tuple(), assets, shares, d.account, b""])
    elif d.protocol == "morpho_blue":
        data = selector(MORPHO_SUPPLY_COLLATERAL) + encode([PARAMS, "uint256", "address", "bytes"],
                                                           [d.params.as_tuple(), p.amount, d.account, b""])
    else:
        data = call_data(COMET_SUPPLY_TO, addr_arg(d.account), addr_arg(p.asset), uint_arg(p.amount))
    out = await ex.tx.send(TxRequest(to=d.target, data=data, purpose=f"{p.action} for {d.account}",
                                     action_key=key, max_cost_wei=cap))
    if out.dry_run:
        logc.info("topup.dry_run", reason="decided and simulated; mode is dry_run")
        return ActionResult(key, "top_up", "dry_run", expected=p.expected_hf_wad)
    if not out.ok:
        raise ExecutionError(f"{key}: top-up reverted ({out.hash})")
    logc.info("topup.done", tx=out.hash)
    return ActionResult(key, "top_up", "done", out.hash, p.expected_hf_wad, None,
                        detail="partial: wallet short" if p.partial else "")
