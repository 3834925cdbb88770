"""Aave V3 deleverage steps by version, pure: what a deleverage through KeeperProtection does to
an account, with each version's own rounding. No IO, ints only.

The contract repays ``repay`` of the debt for the borrower (``Pool.repay``), takes ``withdraw``
of its aTokens (``AToken.transferFrom``), withdraws them and pays the flash loan back with its
premium. What 3.6 (npm @aave-dao/aave-v3-origin 3.6.0) changed in those steps:

* the aToken transfer moves ``rayDivCeil(amount, income)`` scaled units
  (``TokenMath.getATokenTransferScaledAmount``; 3.0.2: ``rayDiv``, half up);
* the repay burns ``rayDivFloor`` and can take at most ``rayMulCeil`` of the scaled debt
  (keeper.protocols.aave_v3.topup36.apply_repay36);
* balances: collateral ``rayMulFloor``, debt ``rayMulCeil`` (math36);
* the health factor: ``wadDiv(sum(collateral_i * LT_i), debt) / 1e4`` (math36.hf36);
* the flash-loan premium is ``percentMulCeil(amount, premium)``
  (``FlashLoanLogic.executeFlashLoanSimple``; 3.0.2: ``percentMul``, half up).

``steps(market)`` gives the set for the market's version; keeper.protocols.aave_v3.deleverage
sizes with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from keeper.model import Address
from keeper.protocols.aave_v3.health import account_data
from keeper.protocols.aave_v3.liquidation import user_reserve
from keeper.protocols.aave_v3.math import get_normalized_debt, get_normalized_income, percent_mul, ray_div, ray_mul
from keeper.protocols.aave_v3.math36 import (
    a_token_balance, hf36, is_v36, normalized_debt, normalized_income, ray_div_ceil, v_token_balance,
)
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState
from keeper.protocols.aave_v3.topup import TopUpInvalid, _with_row, apply_repay
from keeper.protocols.aave_v3.topup36 import TopUp36Invalid, apply_repay36
from keeper.units import BPS

INVALID = (TopUpInvalid, TopUp36Invalid)  # where the Pool or the aToken would revert


@dataclass(frozen=True, slots=True)
class Steps:
    held: Callable[[AaveMarketState, AaveAccount, Address], int]  # aToken balance of an asset
    owed: Callable[[AaveMarketState, AaveAccount, Address], int]  # variable debt of an asset
    repay: Callable[[AaveMarketState, AaveAccount, Address, int], AaveAccount]
    transfer_out: Callable[[AaveMarketState, AaveAccount, Address, int], AaveAccount]
    hf: Callable[[AaveMarketState, AaveAccount], int]
    flash_fee: Callable[[int, int], int]  # (amount, premium bps)


def _transfer_out(market: AaveMarketState, acct: AaveAccount, asset: Address, amount: int,
                  scaled_of: Callable[[int, int], int], income: int) -> AaveAccount:
    reserve = market.by_asset(asset)
    row = user_reserve(acct, reserve.id)
    scaled = scaled_of(amount, income)
    if amount == 0 or scaled > row.scaled_a_token:
        raise TopUpInvalid("INVALID_AMOUNT")
    cfg = acct.user_config
    if scaled == row.scaled_a_token:  # a full balance turns the collateral bit off
        cfg &= ~(1 << (2 * reserve.id + 1))
    return _with_row(acct, replace(row, scaled_a_token=row.scaled_a_token - scaled), cfg)


def transfer_out30(market: AaveMarketState, acct: AaveAccount, asset: Address, amount: int) -> AaveAccount:
    """The account after its aTokens of ``amount`` move to another address (3.0.2 AToken._transfer)."""
    income = get_normalized_income(market.by_asset(asset), market.timestamp)
    return _transfer_out(market, acct, asset, amount, ray_div, income)


def transfer_out36(market: AaveMarketState, acct: AaveAccount, asset: Address, amount: int) -> AaveAccount:
    """The same on 3.6: ``getATokenTransferScaledAmount`` rounds up."""
    income = normalized_income(market.by_asset(asset), market.timestamp)
    return _transfer_out(market, acct, asset, amount, ray_div_ceil, income)


def _scaled(acct: AaveAccount, market: AaveMarketState, asset: Address) -> tuple:
    r = market.by_asset(asset)
    return r, user_reserve(acct, r.id)


V30 = Steps(
    held=lambda m, a, x: ray_mul((s := _scaled(a, m, x))[1].scaled_a_token, get_normalized_income(s[0], m.timestamp)),
    owed=lambda m, a, x: ray_mul((s := _scaled(a, m, x))[1].scaled_variable_debt,
                                 get_normalized_debt(s[0], m.timestamp)),
    repay=apply_repay, transfer_out=transfer_out30,
    hf=lambda m, a: account_data(m, a).health_factor_wad,
    flash_fee=percent_mul)
V36 = Steps(
    held=lambda m, a, x: a_token_balance((s := _scaled(a, m, x))[1].scaled_a_token, normalized_income(s[0], m.timestamp)),
    owed=lambda m, a, x: v_token_balance((s := _scaled(a, m, x))[1].scaled_variable_debt,
                                         normalized_debt(s[0], m.timestamp)),
    repay=apply_repay36, transfer_out=transfer_out36, hf=hf36,
    flash_fee=lambda amount, premium: -(-amount * premium // BPS))  # PercentageMath.percentMulCeil


def steps(market: AaveMarketState) -> Steps:
    return V36 if is_v36(market) else V30
