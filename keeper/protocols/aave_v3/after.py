"""Aave V3, pure: the account (and the market) once keeper's ``liquidationCall`` is mined, as a
later transaction of the same block sees them, to the wei. keeper.followups plans the next
liquidation of the same account on it, to send in the same burst or backrun.

The call is run again on the exact model with the ``debtToCover`` keeper encodes
(``plan_liquidation`` / ``plan_liquidation36``: what the chain will do with that calldata),
then its state changes are applied with the protocol's own rounding:

3.0.2 (``LiquidationLogic.executeLiquidationCall``)
  * debt: ``VariableDebtToken.burn``: scaled -= rayDiv(repaid, index) (half up); the borrowing
    bit is cleared when the user's whole debt of the reserve is what was repaid. Stable debt
    in the debt reserve is not predicted (None: no follow-up);
  * collateral: ``AToken.burn`` (or ``transferOnLiquidation`` with receiveAToken): scaled -=
    rayDiv(received, income); the protocol fee goes to the treasury (``transferOnLiquidation``,
    rayDiv), capped at what is left (the fee becomes rayMul(left, income)); the collateral bit
    is cleared when received + fee (before the cap) is the whole balance.

3.6 (3.3+ rules, ``TokenMath`` rounding)
  * no collateral left (the account's collateral in base equals what is taken in base): the
    reserve's whole debt is burned, and then every other active reserve's debt (bad debt);
  * debt burns scale down (rayDivFloor), the borrowing bit follows the scaled balance (0: cleared);
  * collateral burns and the fee's transfer scale up (rayDivCeil), the fee capped at the
    borrower's scaled balance; the collateral bit as in 3.0.2;
  * virtual balances: the collateral reserve's - received (unless receiveAToken), the debt
    reserve's + repaid.

Reserve indexes and rates are left as they were: at ``market.timestamp`` (the same block)
the indexes a reader normalizes are the ones ``updateState`` stores, and rates only move
later blocks. Rows are kept as the account readers return them (a reserve with neither bit
set has no row; a cleared bit reads as 0).
"""

from __future__ import annotations

from dataclasses import replace

from keeper.model import Liquidate
from keeper.protocols.aave_v3.liquidation import LiquidationInvalid, plan_liquidation
from keeper.protocols.aave_v3.liquidation36 import Liquidation36Invalid, plan_liquidation36
from keeper.protocols.aave_v3.math import get_normalized_debt, get_normalized_income, ray_div, ray_mul
from keeper.protocols.aave_v3.math36 import (
    a_token_balance,
    is_v36,
    normalized_debt,
    normalized_income,
    ray_div_ceil,
    ray_div_floor,
    v_token_balance,
    walk,
)
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState, UserReserve


def after_liquidation(market: AaveMarketState, acct: AaveAccount,
                      d: Liquidate) -> tuple[AaveMarketState, AaveAccount] | None:
    """(market, account) once ``d``'s own-capital liquidationCall of ``acct`` is mined at
    ``market.timestamp``; None when it would revert or is not predicted (capital-free routes,
    stable debt)."""
    if d.route != "own capital" or not isinstance(d.quote, tuple):
        return None
    q, receive_a_token = d.quote
    cover = q.debt_to_repay if q.debt_to_cover is None else q.debt_to_cover  # what plan.encode sends
    try:
        if is_v36(market):
            return _after36(market, acct, q.collateral_asset, q.debt_asset, cover, receive_a_token)
        return _after302(market, acct, q.collateral_asset, q.debt_asset, cover)
    except (LiquidationInvalid, Liquidation36Invalid, KeyError, ArithmeticError):
        return None


def _after302(market: AaveMarketState, acct: AaveAccount, coll_asset: str, debt_asset: str,
              cover: int) -> tuple[AaveMarketState, AaveAccount] | None:
    q = plan_liquidation(market, acct, coll_asset, debt_asset, cover)
    coll, debt = market.by_asset(coll_asset), market.by_asset(debt_asset)
    ts, cfg = market.timestamp, acct.user_config
    rows = {ur.reserve_id: [ur.scaled_a_token, ur.scaled_variable_debt, ur.stable_debt] for ur in acct.reserves}
    d_row = rows.setdefault(debt.id, [0, 0, 0])
    if d_row[2]:
        return None  # stable debt: its burn is not modelled
    index = get_normalized_debt(debt, ts)
    if ray_mul(d_row[1], index) == q.debt_to_repay:  # userTotalDebt == actualDebtToLiquidate
        cfg &= ~(1 << (2 * debt.id))
    d_row[1] -= ray_div(q.debt_to_repay, index)
    income = get_normalized_income(coll, ts)
    c_row = rows.setdefault(coll.id, [0, 0, 0])
    if q.collateral_taken == ray_mul(c_row[0], income):  # all of the balance
        cfg &= ~(1 << (2 * coll.id + 1))
    c_row[0] -= ray_div(q.collateral_to_receive, income)
    fee = q.collateral_taken - q.collateral_to_receive
    if fee:
        if ray_div(fee, income) > c_row[0]:  # the treasury gets what is left
            fee = ray_mul(c_row[0], income)
        c_row[0] -= ray_div(fee, income)
    if d_row[1] < 0 or c_row[0] < 0:
        return None  # the chain would underflow (revert): nothing to predict
    return market, _account(acct, cfg, rows)


def _after36(market: AaveMarketState, acct: AaveAccount, coll_asset: str, debt_asset: str, cover: int,
             receive_a_token: bool) -> tuple[AaveMarketState, AaveAccount] | None:
    q = plan_liquidation36(market, acct, coll_asset, debt_asset, cover)
    coll, debt = market.by_asset(coll_asset), market.by_asset(debt_asset)
    ts, cfg = market.timestamp, acct.user_config
    rows = {ur.reserve_id: [ur.scaled_a_token, ur.scaled_variable_debt, ur.stable_debt] for ur in acct.reserves}
    income, index = normalized_income(coll, ts), normalized_debt(debt, ts)
    c_row, d_row = rows.setdefault(coll.id, [0, 0, 0]), rows.setdefault(debt.id, [0, 0, 0])
    if q.collateral_taken == a_token_balance(c_row[0], income):  # all of the balance
        cfg &= ~(1 << (2 * coll.id + 1))
    unit = pow(10, coll.config.decimals, 2**256)
    no_left = walk(market, acct).totals.total_collateral_base == q.collateral_taken * coll.price_base // unit
    reserve_debt = v_token_balance(d_row[1], index)
    burn = reserve_debt if no_left else q.debt_to_repay
    d_row[1] -= ray_div_floor(burn, index)
    if d_row[1] == 0:
        cfg &= ~(1 << (2 * debt.id))
    c_row[0] -= ray_div_ceil(q.collateral_to_receive, income)
    fee = q.collateral_taken - q.collateral_to_receive
    if fee:
        c_row[0] -= min(ray_div_ceil(fee, income), c_row[0])
    if no_left:  # _burnBadDebt: every other debt the account still has, if its reserve is active
        for r in market.reserves:
            if (cfg >> (2 * r.id)) & 1 and r.config.active:
                row = rows.setdefault(r.id, [0, 0, 0])
                idx = normalized_debt(r, ts)
                row[1] -= ray_div_floor(v_token_balance(row[1], idx), idx)
                if row[1] == 0:
                    cfg &= ~(1 << (2 * r.id))
    if d_row[1] < 0 or c_row[0] < 0 or any(v[1] < 0 for v in rows.values()):
        return None
    virtual = {}
    if debt.virtual_underlying is not None:
        virtual[debt.id] = debt.virtual_underlying + q.debt_to_repay
    if coll.virtual_underlying is not None and not receive_a_token:
        virtual[coll.id] = virtual.get(coll.id, coll.virtual_underlying) - q.collateral_to_receive
    reserves = tuple(replace(r, virtual_underlying=virtual[r.id]) if r.id in virtual else r
                     for r in market.reserves)
    return replace(market, reserves=reserves), _account(acct, cfg, rows)


def _account(acct: AaveAccount, cfg: int, rows: dict[int, list[int]]) -> AaveAccount:
    """The account as a reader returns it: a row per reserve with a bit set, a balance only
    where its bit is set."""
    out = []
    for rid in sorted(rows):
        borrowing, collateral = (cfg >> (2 * rid)) & 1, (cfg >> (2 * rid + 1)) & 1
        if not (borrowing or collateral):
            continue
        scaled_a, vdebt, sdebt = rows[rid]
        out.append(UserReserve(rid, scaled_a if collateral else 0, vdebt if borrowing else 0,
                               sdebt if borrowing else 0))
    return replace(acct, user_config=cfg, reserves=tuple(out))

