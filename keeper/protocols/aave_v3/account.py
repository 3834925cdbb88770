"""Aave V3 GenericLogic.calculateUserAccountData, the walk over an account's reserves: pure,
ints only. Shared by health.py (the exact math and what-ifs) and fast.py (the hot path)."""

from __future__ import annotations

from dataclasses import dataclass

from keeper.errors import SourceError
from keeper.model import Address
from keeper.protocols.aave_v3.math import (
    checked,
    get_normalized_debt,
    get_normalized_income,
    is_borrowing,
    is_empty,
    is_in_emode_category,
    is_using_as_collateral,
    percent_mul,
    ray_mul,
    reserve_ids_in_use,
    wad_div,
)
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState, Reserve
from keeper.units import UINT256_MAX


@dataclass(frozen=True, slots=True)
class UserAccountTotals:
    """The six results of GenericLogic.calculateUserAccountData (getUserAccountData drops the flag)."""

    total_collateral_base: int
    total_debt_base: int
    avg_ltv_bps: int
    avg_liquidation_threshold_bps: int
    health_factor_wad: int
    has_zero_ltv_collateral: bool


def _is_zero_address(address: Address) -> bool:
    return not address or int(address, 16) == 0


def _reserve(market: AaveMarketState, reserve_id: int) -> Reserve | None:
    """The reserve with this id (reservesList[id]), None when the market has none."""
    rs = market.reserves
    if reserve_id < len(rs) and rs[reserve_id].id == reserve_id:
        return rs[reserve_id]
    for r in rs:
        if r.id == reserve_id:
            return r
    return None


def emode_configuration(market: AaveMarketState, category_id: int) -> tuple[int, int, int]:
    # Aave V3 EModeLogic.getEModeConfiguration -> (ltv, liquidationThreshold, eModeAssetPrice)
    category = market.emode_categories.get(category_id)
    if category is None:
        raise SourceError(f"e-mode category {category_id} missing from the market state")
    price = 0 if _is_zero_address(category.price_source) else category.price_base
    return category.ltv_bps, category.liquidation_threshold_bps, price


def _walk(market: AaveMarketState, acct: AaveAccount) -> tuple[UserAccountTotals, dict[int, int]]:
    # Aave V3 GenericLogic.calculateUserAccountData (+ _getUserBalanceInBaseCurrency,
    # _getUserDebtInBaseCurrency). Also returns each counted collateral's value in base.
    cfg = acct.user_config
    if is_empty(cfg):
        return UserAccountTotals(0, 0, 0, 0, UINT256_MAX, False), {}
    emode_ltv = emode_lt = emode_price = 0
    if acct.emode != 0:
        emode_ltv, emode_lt, emode_price = emode_configuration(market, acct.emode)
    balances = {ur.reserve_id: ur for ur in acct.reserves}
    total_collateral = total_debt = avg_ltv = avg_lt = 0
    has_zero_ltv = False
    collateral_values: dict[int, int] = {}
    for i in reserve_ids_in_use(cfg):
        reserve = _reserve(market, i)
        if reserve is None:
            # Aave skips ids whose reservesList entry is address(0) (dropped: no
            # balances left) or past reservesCount; here it more likely means a
            # reserve the read missed, and skipping it could hide debt.
            raise SourceError(f"account {acct.account} uses reserve {i}, absent from the market state")
        ur = balances.get(i)
        if ur is None:
            raise SourceError(f"account {acct.account} uses reserve {i} but no balances were read")
        conf = reserve.config
        asset_unit = pow(10, conf.decimals, 2**256)  # unchecked 10 ** decimals
        use_emode_price = emode_price != 0 and acct.emode == conf.emode_category
        price = emode_price if use_emode_price else reserve.price_base

        if conf.liquidation_threshold_bps != 0 and is_using_as_collateral(cfg, i):
            income = get_normalized_income(reserve, market.timestamp)
            value = checked(ray_mul(ur.scaled_a_token, income) * price) // asset_unit
            collateral_values[i] = value
            total_collateral = checked(total_collateral + value)
            in_emode = is_in_emode_category(acct.emode, conf.emode_category)
            if conf.ltv_bps != 0:
                ltv = emode_ltv if in_emode else conf.ltv_bps
                avg_ltv = checked(avg_ltv + checked(value * ltv))
            else:
                has_zero_ltv = True
            lt = emode_lt if in_emode else conf.liquidation_threshold_bps
            avg_lt = checked(avg_lt + checked(value * lt))

        if is_borrowing(cfg, i):
            debt = ur.scaled_variable_debt
            if debt != 0:
                debt = ray_mul(debt, get_normalized_debt(reserve, market.timestamp))
            debt = checked(debt + ur.stable_debt)
            total_debt = checked(total_debt + checked(price * debt) // asset_unit)

    # unchecked divisions, 0 when there is no collateral
    avg_ltv = avg_ltv // total_collateral if total_collateral else 0
    avg_lt = avg_lt // total_collateral if total_collateral else 0
    if total_debt == 0:
        hf = UINT256_MAX
    else:
        hf = wad_div(percent_mul(total_collateral, avg_lt), total_debt)
    totals = UserAccountTotals(total_collateral, total_debt, avg_ltv, avg_lt, hf, has_zero_ltv)
    return totals, collateral_values
