"""Compound III (Comet) on the devnet, over the Aave devnet's tokens and price feeds.

The contract is keeper's STAND-IN, ``contracts/src/CometStandIn.sol``: no package ships
Comet's bytecode, so the devnet deploys a contract that implements the part of Comet's
interface and math keeper uses (same signatures, events, scales and rounding). keeper's
reader (``keeper.protocols.compound_v3.reader``) only calls functions the real Comet has.

::

    comet = await deploy_comet(w3, info, n_borrowers=30, seed=1)   # -> CometInfo

The market: base USDC (6 decimals), collaterals WETH (borrowCF 0.825, liquidateCF 0.895,
liquidationFactor 0.95) and WBTC (0.70 / 0.77 / 0.95), storeFrontPriceFactor 0.5,
targetReserves 5,000,000 USDC, baseBorrowMin 100 USDC, kinked rates (kink at 80% utilization);
prices from the devnet's PriceFeed contracts (``DevnetInfo.feeds``), governor = deployer.

Seeding (``plan_comet_borrowers`` is pure): liquidation-margin health factors spread over
[1.02, 3.00] (shuffled by ``seed``), each raised to what borrowCF allows at opening (about
1.09 for WETH, 1.10 for WBTC), debts of $1k-$100k, shapes WETH / WBTC / WETH+WBTC that
cycle. Two blocks with automine off: (1) the deployer deploys the stand-in, mints and
``supplyTo``s the lenders' USDC (twice the planned debt, at least $10M) and every
borrower's collateral; (2) every borrower borrows with ``withdraw(USDC, amount)``.
Automine and impersonation are restored (on / off) before it returns. Measured: 0.1 s for
30 borrowers, 0.9 s for 1,000, 3.4 s for 5,000.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import asdict, dataclass
from typing import Any

from eth_utils import event_abi_to_log_topic
from web3 import AsyncWeb3

from keeper.devnet.accounts import DevAccount, derived_accounts
from keeper.devnet.artifacts import load_aave, load_own
from keeper.devnet.rpc import TxQueue, batch, calldata, constructor_args, rpc
from keeper.devnet.state import DevnetInfo
from keeper.errors import DevnetError

E18 = 10**18
BPS = 10_000
BASE = "USDC"
SECONDS_PER_YEAR = 31_536_000


@dataclass(frozen=True, slots=True)
class CollateralSpec:
    symbol: str
    borrow_cf_e4: int  # 4 decimals, as Comet stores factors
    liquidate_cf_e4: int
    liquidation_factor_e4: int
    supply_cap_units: int  # whole tokens


COLLATERALS = (
    CollateralSpec("WETH", 8250, 8950, 9500, 10_000_000),
    CollateralSpec("WBTC", 7000, 7700, 9500, 500_000),
)
# per year, 1e18 = 100%; the stand-in divides by SECONDS_PER_YEAR as Comet's constructor does
RATES = {
    "supplyKink": 8 * E18 // 10, "supplyPerYearInterestRateSlopeLow": 325 * E18 // 10_000,
    "supplyPerYearInterestRateSlopeHigh": 4 * E18 // 10, "supplyPerYearInterestRateBase": 0,
    "borrowKink": 8 * E18 // 10, "borrowPerYearInterestRateSlopeLow": 35 * E18 // 1_000,
    "borrowPerYearInterestRateSlopeHigh": 25 * E18 // 100, "borrowPerYearInterestRateBase": 15 * E18 // 1_000,
}
STORE_FRONT_PRICE_FACTOR = E18 // 2
BASE_BORROW_MIN_UNITS = 100
TARGET_RESERVES_UNITS = 5_000_000
N_LENDERS = 3
HF_MIN_BPS, HF_MAX_BPS, OPEN_MARGIN_BPS = 10_200, 30_000, 30
MIN_LIQUIDITY_USD = 10_000_000
SHAPES = ((("WETH", 10_000),), (("WBTC", 10_000),), (("WETH", 6_000), ("WBTC", 4_000)))
GAS_ETH = 100 * E18
DEPLOY_GAS, TOKEN_GAS, SUPPLY_GAS, BORROW_GAS = 10_000_000, 150_000, 300_000, 500_000
MAX_UINT = 2**256 - 1


@dataclass(frozen=True)
class CometInfo:
    """A stand-in Comet deployed on the devnet. Dicts are keyed by token symbol."""

    comet: str
    base_token: str
    base_symbol: str
    assets: dict[str, str]  # collateral symbol -> token
    feeds: dict[str, str]  # symbol -> PriceFeed (base included)
    governor: str
    lenders: tuple[str, ...]
    borrowers: tuple[str, ...]
    deploy_block: int
    positions: tuple[dict[str, Any], ...] = ()  # per borrower: the plan (to_json)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class CometBorrowerPlan:
    index: int
    account: DevAccount
    collateral: tuple[tuple[str, int], ...]  # (symbol, token units)
    borrow: int  # base units
    target_hf_bps: int

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "address": self.account.address,
                "collateral": dict(self.collateral), "borrow": self.borrow,
                "target_hf_bps": self.target_hf_bps}


def _spec(symbol: str) -> CollateralSpec:
    return next(c for c in COLLATERALS if c.symbol == symbol)


def plan_comet_borrowers(n: int, seed: int, accounts: list[DevAccount], prices_e8: dict[str, int],
                         decimals: dict[str, int]) -> list[CometBorrowerPlan]:
    """Positions for ``accounts[:n]`` at ``prices_e8``; same inputs give the same plan."""
    rng = random.Random(seed)
    span = HF_MAX_BPS - HF_MIN_BPS
    targets = [HF_MIN_BPS + (span * k // (n - 1) if n > 1 else 0) for k in range(n)]
    rng.shuffle(targets)

    def units(value_e8: int, symbol: str) -> int:
        return value_e8 * 10 ** decimals[symbol] // prices_e8[symbol]

    plans = []
    for i in range(n):
        shape = SHAPES[i % len(SHAPES)]
        w_liq = sum(share * _spec(s).liquidate_cf_e4 for s, share in shape)  # bps * e4
        w_bor = sum(share * _spec(s).borrow_cf_e4 for s, share in shape)
        floor = -(-w_liq * (BPS + OPEN_MARGIN_BPS) // w_bor)  # HF at the borrowCF limit + margin
        hf = max(targets[i], floor)
        debt_e8 = rng.randrange(1_000, 100_001) * 10**8
        collateral_e8 = -(-debt_e8 * hf * 10_000 // w_liq)  # sum(c_j * liqCF_j) = hf * debt
        plans.append(CometBorrowerPlan(
            index=i, account=accounts[i],
            collateral=tuple((s, units(collateral_e8 * sh // BPS, s)) for s, sh in shape),
            borrow=units(debt_e8, BASE), target_hf_bps=hf))
    return plans


def comet_config(info: DevnetInfo) -> tuple:
    """The stand-in's constructor argument (Comet's Configuration, minus rewards fields)."""
    unit = 10 ** info.decimals[BASE]
    assets = [
        (info.tokens[c.symbol], info.feeds[c.symbol], info.decimals[c.symbol],
         c.borrow_cf_e4 * 10**14, c.liquidate_cf_e4 * 10**14, c.liquidation_factor_e4 * 10**14,
         c.supply_cap_units * 10 ** info.decimals[c.symbol])
        for c in COLLATERALS
    ]
    return (info.deployer, info.deployer, info.tokens[BASE], info.feeds[BASE], *RATES.values(),
            STORE_FRONT_PRICE_FACTOR, BASE_BORROW_MIN_UNITS * unit, TARGET_RESERVES_UNITS * unit, assets)


async def _feed_prices(w3: AsyncWeb3, info: DevnetInfo) -> dict[str, int]:
    abi = load_own("PriceFeed").abi
    symbols = [BASE, *(c.symbol for c in COLLATERALS)]
    raws = await batch(w3, [("eth_call", [{"to": info.feeds[s], "data": calldata(abi, "latestAnswer", [])},
                                          "latest"]) for s in symbols])
    prices = {s: int(r, 16) for s, r in zip(symbols, raws, strict=True)}
    if any(p <= 0 or p >= 2**255 for p in prices.values()):
        raise DevnetError(f"cannot seed Comet at non-positive prices {prices}")
    return prices


async def deploy_comet(w3: AsyncWeb3, info: DevnetInfo, n_borrowers: int, seed: int) -> CometInfo:
    """Deploy the stand-in over ``info``'s tokens and feeds, lenders and ``n_borrowers``."""
    if n_borrowers < 0:
        raise DevnetError("n_borrowers must be >= 0")
    await rpc(w3, "evm_setAutomine", [False])
    await rpc(w3, "anvil_autoImpersonateAccount", [True])
    try:
        result = await _deploy(w3, info, n_borrowers, seed)
    except BaseException:
        with contextlib.suppress(DevnetError):  # keep the first error, not the clean-up's
            await _normal_mining(w3)
        raise
    await _normal_mining(w3)
    return result


async def _normal_mining(w3: AsyncWeb3) -> None:
    await rpc(w3, "anvil_autoImpersonateAccount", [False])
    await rpc(w3, "evm_setAutomine", [True])


async def _deploy(w3: AsyncWeb3, info: DevnetInfo, n_borrowers: int, seed: int) -> CometInfo:
    art, erc20 = load_own("CometStandIn"), load_aave("MintableERC20").abi
    me = info.deployer
    prices = await _feed_prices(w3, info)
    lenders = [a.address for a in derived_accounts("comet-lender", seed, N_LENDERS)]
    accounts = derived_accounts("comet-borrower", seed, n_borrowers)
    plans = plan_comet_borrowers(n_borrowers, seed, accounts, prices, info.decimals)
    borrowers = [p.account.address for p in plans]
    await batch(w3, [("anvil_setBalance", [a, hex(GAS_ETH)]) for a in borrowers])
    txs = TxQueue(w3)
    await txs.load_nonces([me, *borrowers])
    deploy_block = int(await rpc(w3, "eth_blockNumber", []), 16) + 1

    # Block 1, all from the deployer (one sender: its nonces order the block).
    comet = txs.deploy(me, art.bytecode + constructor_args(art.abi, [comet_config(info)]),
                       gas=DEPLOY_GAS, label="deploy CometStandIn")
    total_debt = sum(p.borrow for p in plans)
    liquidity = max(2 * total_debt, MIN_LIQUIDITY_USD * 10**8 * 10 ** info.decimals[BASE] // prices[BASE])
    needs = {BASE: liquidity}
    for p in plans:
        for symbol, amount in p.collateral:
            needs[symbol] = needs.get(symbol, 0) + amount
    for symbol, total in needs.items():
        token = info.tokens[symbol]
        txs.call(me, token, erc20, "mint", [me, total], gas=TOKEN_GAS, label=f"mint {symbol}")
        txs.call(me, token, erc20, "approve", [comet, MAX_UINT], gas=TOKEN_GAS, label=f"approve {symbol}")
    share = liquidity // N_LENDERS
    for k, lender in enumerate(lenders):
        amount = share if k < N_LENDERS - 1 else liquidity - share * (N_LENDERS - 1)
        txs.call(me, comet, art.abi, "supplyTo", [lender, info.tokens[BASE], amount], gas=SUPPLY_GAS,
                 label=f"supplyTo lender {lender} {amount} {BASE}")
    for p in plans:
        for symbol, amount in p.collateral:
            txs.call(me, comet, art.abi, "supplyTo", [p.account.address, info.tokens[symbol], amount],
                     gas=SUPPLY_GAS, label=f"supplyTo borrower #{p.index} {amount} {symbol}")
    await txs.mine(_events(art.abi, comet, "Supply", "SupplyCollateral"))

    # Block 2: every borrower borrows base from its own account.
    for p in plans:
        txs.call(p.account.address, comet, art.abi, "withdraw", [info.tokens[BASE], p.borrow],
                 gas=BORROW_GAS, label=f"borrow {p.borrow} {BASE} by #{p.index} {p.account.address}")
    await txs.mine(_events(art.abi, comet, "Withdraw"))
    return CometInfo(
        comet=comet, base_token=info.tokens[BASE], base_symbol=BASE,
        assets={c.symbol: info.tokens[c.symbol] for c in COLLATERALS},
        feeds={s: info.feeds[s] for s in (BASE, *(c.symbol for c in COLLATERALS))},
        governor=me, lenders=tuple(lenders), borrowers=tuple(borrowers), deploy_block=deploy_block,
        positions=tuple(p.to_json() for p in plans),
    )


def _events(abi: list[dict], address: str, *names: str) -> dict:
    """eth_getLogs filter for the Comet events that mark our transactions as done."""
    topics = ["0x" + event_abi_to_log_topic(e).hex() for e in abi
              if e.get("type") == "event" and e["name"] in names]
    return {"address": address, "topics": [topics]}
