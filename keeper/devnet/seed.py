"""Lenders and borrowers for the devnet market: a pure plan, then two blocks of transactions.

``plan_borrowers(n, seed)`` decides every position with integer math, no chain access:
health factors spread evenly over [1.02, 3.00] (shuffled by ``seed``; each raised to what its
LTV allows at opening, so the lowest are about 1.03), debts of $1k-$100k, eight shapes that
cycle: one or two collaterals, one or two debts, and a stablecoin e-mode shape.

``seed_positions(w3, txs, market, plans, lenders)`` then lands them in two blocks:

1. lenders mint, approve and supply liquidity (twice the planned debt per asset, at least
   $10M); the deployer mints every borrower's collateral and supplies it ``onBehalfOf`` the
   borrower (Aave turns it on as collateral); e-mode borrowers call ``setUserEMode``;
2. every borrower borrows (variable rate) from its own account.

Borrowers get 100 ETH for gas with ``anvil_setBalance``; transactions are sent with
auto-impersonation, so nothing is signed in Python.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

from eth_utils import event_abi_to_log_topic
from web3 import AsyncWeb3

from keeper.devnet import params
from keeper.devnet.accounts import DEPLOYER, DevAccount, anvil_account
from keeper.devnet.artifacts import load_aave
from keeper.devnet.deploy import Market
from keeper.devnet.rpc import TxQueue, batch

BPS = 10_000
HF_MIN_BPS, HF_MAX_BPS = 10_200, 30_000
OPEN_MARGIN_BPS = 30  # keep 0.3% under the LTV limit at opening (rounding, interest)
GAS_ETH = 100 * 10**18
MIN_LIQUIDITY_USD = 10_000_000
MINT_GAS, APPROVE_GAS, EMODE_GAS = 150_000, 100_000, 300_000
SUPPLY_GAS, BORROW_GAS = 600_000, 1_000_000
MAX_UINT = 2**256 - 1

# (collateral [(symbol, share of collateral value in bps)], debt [(symbol, share)], e-mode)
SHAPES: tuple[tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...], int], ...] = (
    ((("WETH", 10_000),), (("USDC", 10_000),), 0),
    ((("WBTC", 10_000),), (("USDC", 10_000),), 0),
    ((("WETH", 10_000),), (("DAI", 10_000),), 0),
    ((("USDC", 10_000),), (("WETH", 10_000),), 0),
    ((("WETH", 6_000), ("WBTC", 4_000)), (("USDC", 5_000), ("DAI", 5_000)), 0),
    ((("WBTC", 5_000), ("USDC", 5_000)), (("WETH", 7_000), ("DAI", 3_000)), 0),
    ((("USDC", 10_000),), (("DAI", 10_000),), params.STABLE_EMODE),
    ((("DAI", 5_000), ("WETH", 5_000)), (("WBTC", 10_000),), 0),
)


@dataclass(frozen=True, slots=True)
class BorrowerPlan:
    index: int
    account: DevAccount
    emode: int
    collateral: tuple[tuple[str, int], ...]  # (symbol, amount in token base units)
    debt: tuple[tuple[str, int], ...]
    target_hf_bps: int  # what the amounts aim at with the initial prices

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "address": self.account.address,
            "emode": self.emode,
            "collateral": dict(self.collateral),
            "debt": dict(self.debt),
            "target_hf_bps": self.target_hf_bps,
        }


def _risk(symbol: str, emode: int) -> tuple[int, int]:
    """(ltv_bps, liquidation_threshold_bps) of ``symbol`` for a user in ``emode``."""
    r = params.spec(symbol)
    if emode and r.emode_category == emode:
        e = next(e for e in params.EMODES if e.id == emode)
        return e.ltv_bps, e.liquidation_threshold_bps
    return r.ltv_bps, r.liquidation_threshold_bps


def _to_units(value_e8: int, symbol: str) -> int:
    r = params.spec(symbol)
    return value_e8 * 10**r.decimals // r.price_e8


def plan_borrowers(n: int, seed: int, accounts: list[DevAccount]) -> list[BorrowerPlan]:
    """Positions for ``accounts[:n]``; same ``n`` and ``seed`` give the same plan."""
    rng = random.Random(seed)
    span = HF_MAX_BPS - HF_MIN_BPS
    targets = [HF_MIN_BPS + (span * k // (n - 1) if n > 1 else 0) for k in range(n)]
    rng.shuffle(targets)
    plans = []
    for i in range(n):
        collateral_shape, debt_shape, emode = SHAPES[i % len(SHAPES)]
        weighted_lt = sum(share * _risk(s, emode)[1] for s, share in collateral_shape)  # bps^2
        weighted_ltv = sum(share * _risk(s, emode)[0] for s, share in collateral_shape)
        # HF at opening can't be below LT/LTV (a loan at the LTV limit); keep a margin above it.
        floor = -(-weighted_lt * (BPS + OPEN_MARGIN_BPS) // weighted_ltv)
        hf = max(targets[i], floor)
        debt_e8 = rng.randrange(1_000, 100_001) * 10**8
        collateral_e8 = -(-debt_e8 * hf * BPS // weighted_lt)  # sum(c_j * LT_j) = HF * debt
        plans.append(
            BorrowerPlan(
                index=i,
                account=accounts[i],
                emode=emode,
                collateral=tuple(
                    (s, _to_units(collateral_e8 * sh // BPS, s)) for s, sh in collateral_shape
                ),
                debt=tuple((s, _to_units(debt_e8 * sh // BPS, s)) for s, sh in debt_shape),
                target_hf_bps=hf,
            )
        )
    return plans


def liquidity_needed(plans: list[BorrowerPlan]) -> dict[str, int]:
    """Per symbol: what lenders supply (2x the planned debt, at least $10M worth)."""
    debt: dict[str, int] = defaultdict(int)
    for p in plans:
        for symbol, amount in p.debt:
            debt[symbol] += amount
    return {
        r.symbol: max(2 * debt[r.symbol], _to_units(MIN_LIQUIDITY_USD * 10**8, r.symbol))
        for r in params.RESERVES
    }


async def seed_positions(
    w3: AsyncWeb3,
    txs: TxQueue,
    market: Market,
    plans: list[BorrowerPlan],
    lenders: list[DevAccount],
) -> None:
    """Land the lenders' liquidity and the planned borrowers; raises DevnetError on any revert."""
    erc20 = load_aave("MintableERC20").abi
    pool = load_aave("Pool").abi
    deployer = anvil_account(DEPLOYER).address
    borrowers = [p.account.address for p in plans]
    lender_addrs = [acct.address for acct in lenders]
    await batch(w3, [("anvil_setBalance", [a, hex(GAS_ETH)]) for a in (*lender_addrs, *borrowers)])
    await txs.load_nonces([deployer, *lender_addrs, *borrowers])

    # Block 1: liquidity, collateral (supplied on behalf of each borrower), e-mode.
    liquidity = liquidity_needed(plans)
    for lender, r in zip(lender_addrs, params.RESERVES, strict=False):
        token, amount = market.tokens[r.symbol], liquidity[r.symbol]
        what = f"lender {lender} {r.symbol}"
        txs.call(lender, token, erc20, "mint", [amount], gas=MINT_GAS, label=f"mint {what}")
        txs.call(lender, token, erc20, "approve", [market.pool, MAX_UINT], gas=APPROVE_GAS,
                 label=f"approve {what}")  # fmt: skip
        txs.call(lender, market.pool, pool, "supply", [token, amount, lender, 0], gas=SUPPLY_GAS,
                 label=f"supply {what}")  # fmt: skip
    collateral: dict[str, int] = defaultdict(int)
    for p in plans:
        for symbol, amount in p.collateral:
            collateral[symbol] += amount
    for symbol, total in collateral.items():
        token = market.tokens[symbol]
        txs.call(deployer, token, erc20, "mint", [deployer, total], gas=MINT_GAS,
                 label=f"mint {symbol} for the borrowers' collateral")  # fmt: skip
        txs.call(deployer, token, erc20, "approve", [market.pool, MAX_UINT], gas=APPROVE_GAS,
                 label=f"approve {symbol}")  # fmt: skip
    for p in plans:
        who = f"borrower #{p.index} {p.account.address}"
        for symbol, amount in p.collateral:
            args = [market.tokens[symbol], amount, p.account.address, 0]
            txs.call(deployer, market.pool, pool, "supply", args, gas=SUPPLY_GAS,
                     label=f"supply {amount} {symbol} for {who}")  # fmt: skip
        if p.emode:
            txs.call(p.account.address, market.pool, pool, "setUserEMode", [p.emode], gas=EMODE_GAS,
                     label=f"setUserEMode({p.emode}) by {who}")  # fmt: skip
    await txs.mine(_pool_events(pool, market.pool, "Supply", "UserEModeSet"))

    # Block 2: every borrower borrows (variable rate = 2) from its own account.
    for p in plans:
        who = f"borrower #{p.index} {p.account.address}"
        for symbol, amount in p.debt:
            args = [market.tokens[symbol], amount, 2, 0, p.account.address]
            txs.call(p.account.address, market.pool, pool, "borrow", args, gas=BORROW_GAS,
                     label=f"borrow {amount} {symbol} by {who}")  # fmt: skip
    await txs.mine(_pool_events(pool, market.pool, "Borrow"))


def _pool_events(abi: list[dict], pool: str, *names: str) -> dict:
    """eth_getLogs filter for the Pool events that mark our transactions as done."""
    topics = [
        "0x" + event_abi_to_log_topic(e).hex()
        for e in abi
        if e.get("type") == "event" and e["name"] in names
    ]
    return {"address": pool, "topics": [topics]}
