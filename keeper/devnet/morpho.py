"""Morpho Blue on the devnet: the real contract from npm ``@morpho-org/morpho-blue`` 1.0.0,
its IrmMock and OracleMock, two markets over the Aave devnet's tokens, lenders and borrowers.

::

    minfo = await deploy_morpho(w3, info, n_borrowers=50, seed=1)   # info: the Aave DevnetInfo
    change = await set_morpho_price(w3, minfo, minfo.market_ids[0], price_1e36)
    load_morpho("Morpho")                                           # Artifact (ABI + bytecode)

Bytecode: ``keeper/devnet/compile_morpho.js`` compiles the package's sources with npm solc
0.8.19 and the package's settings (via-IR, 999999 runs, paris, no metadata hash) into
``build/morpho.json`` on first use (about 8-25 s), cached by a hash of its inputs.

Markets (``MARKETS``): WETH(18)/USDC(6) LLTV 86% with a 10% fee to the treasury, and
WBTC(8)/USDC(6) LLTV 77%; IRM: the package's IrmMock (x% utilization = x% APR); one OracleMock
per market, priced from the Aave devnet's feeds (WETH $2000, WBTC $60000, USDC $1) at the
scale Morpho wants: 1e36 * 10^(loan decimals - collateral decimals) per USD ratio. The owner
is the Aave devnet's deployer (anvil account 0, unlocked). Three blocks, automine off:

1. deploy Morpho, IrmMock, the oracles; setPrice, enableIrm, enableLltv, setFeeRecipient,
   createMarket, setFee; the deployer mints the borrowers' collateral and approves Morpho;
2. one lender per market mints USDC and supplies it (2x the planned debt, at least $10M);
   the deployer supplies each borrower's collateral ``onBehalf`` of the borrower;
3. every borrower borrows USDC from its own account (health factors spread evenly over
   [1.02, 3.00], shuffled by ``seed``; debts of $1k-$100k; borrower i in market i % 2).

Borrowers and lenders are derived accounts of their own roles ("morpho-borrower",
"morpho-lender"), so they never overlap the Aave devnet's. Automine and impersonation are
restored (on / off) before ``deploy_morpho`` returns, even when it fails.
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from web3 import AsyncWeb3

from keeper.devnet.accounts import derived_accounts
from keeper.devnet.api import get_price
from keeper.devnet.artifacts import ROOT, Artifact, load_aave
from keeper.devnet.rpc import (
    TxQueue,
    batch,
    calldata,
    constructor_args,
    rpc,
    wait_receipt,
)
from keeper.devnet.state import DevnetInfo
from keeper.errors import DevnetError
from keeper.protocols.morpho_blue.math import ORACLE_PRICE_SCALE, WAD, MarketParams
from keeper.protocols.morpho_blue.reader import market_id

COMPILE_MORPHO_JS = Path(__file__).with_name("compile_morpho.js")
MORPHO_BUILD = ROOT / "build" / "morpho.json"
BPS = 10_000
HF_MIN_BPS, HF_MAX_BPS = 10_200, 30_000
MIN_LIQUIDITY_USD = 10_000_000
GAS_ETH = 100 * 10**18
DEPLOY_GAS, CALL_GAS, MINT_GAS, APPROVE_GAS = 8_000_000, 300_000, 150_000, 100_000
SUPPLY_GAS, BORROW_GAS, PRICE_GAS = 300_000, 400_000, 100_000
MAX_UINT = 2**256 - 1


@dataclass(frozen=True, slots=True)
class MarketSpec:
    label: str
    collateral: str  # symbol of an Aave devnet token
    loan: str
    lltv: int  # wad
    fee: int  # wad, <= 25%


MARKETS = (
    MarketSpec("WETH/USDC", "WETH", "USDC", 86 * 10**16, 10**17),
    MarketSpec("WBTC/USDC", "WBTC", "USDC", 77 * 10**16, 0),
)


@dataclass(frozen=True)
class MorphoInfo:
    """A Morpho Blue deployment on the devnet. Market ids are 0x-hex bytes32 (lower case)."""

    morpho: str
    owner: str  # the Aave devnet's deployer
    fee_recipient: str  # the Aave devnet's treasury
    irm: str  # IrmMock
    market_ids: tuple[str, ...]  # in MARKETS order
    markets: dict[str, MarketParams]  # id -> params
    labels: dict[str, str]  # id -> "WETH/USDC"
    oracles: dict[str, str]  # id -> OracleMock
    lenders: tuple[str, ...]  # one per market, in MARKETS order
    borrowers: tuple[str, ...]
    # per borrower: {index, address, market_id, collateral, borrow, target_hf_bps} (base units)
    positions: tuple[dict[str, Any], ...]
    deploy_block: int  # block holding Morpho's deployment

    def market(self, label: str) -> str:
        """The id of the market labelled e.g. "WETH/USDC"."""
        for mid, name in self.labels.items():
            if name == label:
                return mid
        raise KeyError(label)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MorphoInfo:
        d = dict(data)
        d["market_ids"] = tuple(d["market_ids"])
        d["markets"] = {k: MarketParams(**v) for k, v in d["markets"].items()}
        d["lenders"], d["borrowers"] = tuple(d["lenders"]), tuple(d["borrowers"])
        d["positions"] = tuple(d["positions"])
        return cls(**d)


async def follow_feed(w3: AsyncWeb3, minfo: MorphoInfo, symbol: str, old_e8: int, new_e8: int,
                      *, timestamp: int | None = None) -> list[MorphoPriceChange]:
    """Move every Morpho market whose collateral is ``symbol`` by the same ratio as its USD
    feed moved (old_e8 -> new_e8), so one crash hits Aave V3 and Morpho Blue alike."""
    out = []
    for mid in minfo.market_ids:
        if minfo.labels[mid].split("/")[0].upper() == symbol.upper():
            old = await get_morpho_price(w3, minfo, mid)
            out.append(await set_morpho_price(w3, minfo, mid, old * new_e8 // old_e8,
                                              timestamp=timestamp))
    return out


# ---------------------------------------------------------------- bytecode


def compile_morpho(timeout_s: float = 300.0) -> Path:
    """Run compile_morpho.js (a no-op when build/morpho.json matches its inputs)."""
    try:
        proc = subprocess.run(["node", str(COMPILE_MORPHO_JS), str(MORPHO_BUILD)], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except FileNotFoundError as e:
        raise DevnetError("node is not installed (needed to compile Morpho Blue)") from e
    except subprocess.TimeoutExpired as e:
        raise DevnetError(f"compiling Morpho Blue took longer than {timeout_s:.0f} s") from e
    if proc.returncode != 0:
        raise DevnetError(f"compiling Morpho Blue failed:\n{proc.stderr.strip()}")
    return MORPHO_BUILD


@cache
def _morpho_build() -> dict[str, Any]:
    compile_morpho()
    return json.loads(MORPHO_BUILD.read_text())["contracts"]


def load_morpho(name: str) -> Artifact:
    """"Morpho" (its ABI with EventsLib's events), "IrmMock" or "OracleMock"."""
    contracts = _morpho_build()
    if name not in contracts:
        raise DevnetError(f"contract {name!r} not in {MORPHO_BUILD} (have {sorted(contracts)})")
    c = contracts[name]
    return Artifact(name, c["abi"], c["bytecode"], {}, c["source"], c["deployedBytecode"])


# ---------------------------------------------------------------- plan (pure)


def oracle_price(collateral_e8: int, collateral_decimals: int, loan_e8: int, loan_decimals: int) -> int:
    """IOracle.price() for two USD prices (8 decimals): 1 collateral base unit in loan base
    units, scaled by 1e36: 1e36 * 10^(loan dec - collateral dec) * collateral / loan, floored."""
    num = ORACLE_PRICE_SCALE * 10**loan_decimals * collateral_e8
    return num // (10**collateral_decimals * loan_e8)


@dataclass(frozen=True, slots=True)
class BorrowerPlan:
    index: int
    address: str
    market: int  # index in MARKETS
    collateral: int  # collateral token base units
    borrow: int  # loan token base units
    target_hf_bps: int


def plan_borrowers(addresses: list[str], seed: int, prices: list[int]) -> list[BorrowerPlan]:
    """Borrower i opens in market i % len(MARKETS) with HF (maxBorrow / debt, at
    ``prices[market]``) spread evenly over [1.02, 3.00], shuffled by ``seed``."""
    n = len(addresses)
    rng = random.Random(seed)
    targets = [HF_MIN_BPS + ((HF_MAX_BPS - HF_MIN_BPS) * k // (n - 1) if n > 1 else 0)
               for k in range(n)]
    rng.shuffle(targets)
    plans = []
    for i, (addr, hf) in enumerate(zip(addresses, targets, strict=True)):
        k = i % len(MARKETS)
        spec = MARKETS[k]
        borrow = rng.randrange(1_000, 100_001) * 10**6  # USDC
        # maxBorrow = collateral * price / 1e36 * lltv / WAD = borrow * hf: round collateral up
        num = borrow * hf * WAD * ORACLE_PRICE_SCALE
        collateral = -(-num // (BPS * spec.lltv * prices[k]))
        plans.append(BorrowerPlan(i, addr, k, collateral, borrow, hf))
    return plans


# ---------------------------------------------------------------- deploy


async def deploy_morpho(w3: AsyncWeb3, info: DevnetInfo, n_borrowers: int, seed: int) -> MorphoInfo:
    """Deploy Morpho Blue with two markets, lenders and ``n_borrowers`` borrowers on the
    devnet described by ``info`` (its tokens, feeds, deployer and treasury)."""
    if n_borrowers < 0:
        raise DevnetError("n_borrowers must be >= 0")
    morpho_art, irm_art, oracle_art = (load_morpho(n) for n in ("Morpho", "IrmMock", "OracleMock"))
    usd = {s: await get_price(w3, info, s) for s in {x for m in MARKETS for x in (m.collateral, m.loan)}}
    prices = [oracle_price(usd[m.collateral], info.decimals[m.collateral], usd[m.loan],
                           info.decimals[m.loan]) for m in MARKETS]
    lenders = [a.address for a in derived_accounts("morpho-lender", seed, len(MARKETS))]
    borrowers = [a.address for a in derived_accounts("morpho-borrower", seed, n_borrowers)]
    plans = plan_borrowers(borrowers, seed, prices)
    owner = info.deployer
    await rpc(w3, "evm_setAutomine", [False])
    await rpc(w3, "anvil_autoImpersonateAccount", [True])
    try:
        await batch(w3, [("anvil_setBalance", [a, hex(GAS_ETH)]) for a in (*lenders, *borrowers)])
        txs = TxQueue(w3)
        await txs.load_nonces([owner, *lenders, *borrowers])
        deploy_block = int(await rpc(w3, "eth_blockNumber", []), 16) + 1
        minfo = _queue_contracts(txs, info, morpho_art, irm_art, oracle_art, prices, lenders,
                                 borrowers, plans, deploy_block)
        _queue_collateral_mints(txs, info, minfo, plans)
        await txs.mine()
        _queue_liquidity(txs, info, minfo, plans)
        await txs.mine()
        for p in plans:
            mid = minfo.market_ids[p.market]
            args = [minfo.markets[mid].as_tuple(), p.borrow, 0, p.address, p.address]
            txs.call(p.address, minfo.morpho, morpho_art.abi, "borrow", args, gas=BORROW_GAS,
                     label=f"borrow {p.borrow} by morpho borrower #{p.index} {p.address}")
        await txs.mine()
    except BaseException:
        with contextlib.suppress(DevnetError):  # keep the first error, not the clean-up's
            await _normal_mining(w3)
        raise
    await _normal_mining(w3)
    return minfo


async def _normal_mining(w3: AsyncWeb3) -> None:
    await rpc(w3, "anvil_autoImpersonateAccount", [False])
    await rpc(w3, "evm_setAutomine", [True])


def _queue_contracts(txs: TxQueue, info: DevnetInfo, morpho_art: Artifact, irm_art: Artifact,
                     oracle_art: Artifact, prices: list[int], lenders: list[str],
                     borrowers: list[str], plans: list[BorrowerPlan], deploy_block: int) -> MorphoInfo:
    """Block 1 (all from the owner, so nonce order holds): contracts, configuration, markets."""
    owner, abi = info.deployer, morpho_art.abi
    code = morpho_art.bytecode + constructor_args(abi, [owner])
    morpho = txs.deploy(owner, code, gas=DEPLOY_GAS, label="deploy Morpho")
    irm = txs.deploy(owner, irm_art.bytecode, gas=DEPLOY_GAS, label="deploy IrmMock")
    oracles = [txs.deploy(owner, oracle_art.bytecode, gas=DEPLOY_GAS, label=f"deploy OracleMock {m.label}")
               for m in MARKETS]

    def call(to: str, art_abi: list, fn: str, *args: Any) -> None:
        txs.call(owner, to, art_abi, fn, list(args), gas=CALL_GAS, label=f"{fn}{args!r:.120}")

    for oracle, price in zip(oracles, prices, strict=True):
        call(oracle, oracle_art.abi, "setPrice", price)
    call(morpho, abi, "enableIrm", irm)
    for lltv in sorted({m.lltv for m in MARKETS}):
        call(morpho, abi, "enableLltv", lltv)
    call(morpho, abi, "setFeeRecipient", info.treasury)
    params = [MarketParams(info.tokens[m.loan], info.tokens[m.collateral], o, irm, m.lltv)
              for m, o in zip(MARKETS, oracles, strict=True)]
    ids = [market_id(p) for p in params]
    for spec, p in zip(MARKETS, params, strict=True):
        call(morpho, abi, "createMarket", p.as_tuple())
        if spec.fee:
            call(morpho, abi, "setFee", p.as_tuple(), spec.fee)
    return MorphoInfo(
        morpho=morpho, owner=owner, fee_recipient=info.treasury, irm=irm,
        market_ids=tuple(ids), markets=dict(zip(ids, params, strict=True)),
        labels={i: m.label for i, m in zip(ids, MARKETS, strict=True)},
        oracles=dict(zip(ids, oracles, strict=True)), lenders=tuple(lenders),
        borrowers=tuple(borrowers),
        positions=tuple({"index": p.index, "address": p.address, "market_id": ids[p.market],
                         "collateral": p.collateral, "borrow": p.borrow,
                         "target_hf_bps": p.target_hf_bps} for p in plans),
        deploy_block=deploy_block)


def _queue_collateral_mints(txs: TxQueue, info: DevnetInfo, minfo: MorphoInfo,
                            plans: list[BorrowerPlan]) -> None:
    erc20 = load_aave("MintableERC20").abi
    owner = minfo.owner
    for k, spec in enumerate(MARKETS):
        total = sum(p.collateral for p in plans if p.market == k)
        token = info.tokens[spec.collateral]
        if total:
            txs.call(owner, token, erc20, "mint", [owner, total], gas=MINT_GAS,
                     label=f"mint {total} {spec.collateral} for morpho collateral")
    for token in sorted({info.tokens[m.collateral] for m in MARKETS}):
        txs.call(owner, token, erc20, "approve", [minfo.morpho, MAX_UINT], gas=APPROVE_GAS,
                 label=f"approve Morpho for {token}")


def _queue_liquidity(txs: TxQueue, info: DevnetInfo, minfo: MorphoInfo,
                     plans: list[BorrowerPlan]) -> None:
    """Block 2: lenders supply the loan token; collateral goes in on behalf of each borrower."""
    erc20, abi = load_aave("MintableERC20").abi, load_morpho("Morpho").abi
    for k, (spec, lender, mid) in enumerate(zip(MARKETS, minfo.lenders, minfo.market_ids, strict=True)):
        planned = sum(p.borrow for p in plans if p.market == k)
        amount = max(2 * planned, MIN_LIQUIDITY_USD * 10 ** info.decimals[spec.loan])
        token, what = info.tokens[spec.loan], f"lender {lender} {spec.label}"
        txs.call(lender, token, erc20, "mint", [amount], gas=MINT_GAS, label=f"mint {what}")
        txs.call(lender, token, erc20, "approve", [minfo.morpho, MAX_UINT], gas=APPROVE_GAS,
                 label=f"approve {what}")
        txs.call(lender, minfo.morpho, abi, "supply",
                 [minfo.markets[mid].as_tuple(), amount, 0, lender, b""], gas=SUPPLY_GAS,
                 label=f"supply {what}")
    for p in plans:
        mid = minfo.market_ids[p.market]
        txs.call(minfo.owner, minfo.morpho, abi, "supplyCollateral",
                 [minfo.markets[mid].as_tuple(), p.collateral, p.address, b""], gas=SUPPLY_GAS,
                 label=f"supplyCollateral {p.collateral} for morpho borrower #{p.index}")


# ---------------------------------------------------------------- prices


@dataclass(frozen=True, slots=True)
class MorphoPriceChange:
    market_id: str
    old: int  # 1e36-scaled
    new: int
    tx_hash: str
    block: int
    timestamp: int


async def get_morpho_price(w3: AsyncWeb3, minfo: MorphoInfo, market_id: str) -> int:
    oracle = w3.eth.contract(address=minfo.oracles[market_id.lower()],
                             abi=load_morpho("OracleMock").abi)
    return int(await oracle.functions.price().call())


async def set_morpho_price(w3: AsyncWeb3, minfo: MorphoInfo, market_id: str, price_1e36: int,
                           *, timestamp: int | None = None) -> MorphoPriceChange:
    """Move the market's OracleMock to ``price_1e36`` with a real, mined ``setPrice`` tx from
    the owner. ``timestamp`` sets the mining block's timestamp (anvil accepts the latest
    block's own: the price then moves with no interest accruing), as api.set_price does."""
    mid = market_id.lower()
    if mid not in minfo.oracles:
        raise DevnetError(f"no Morpho devnet market {market_id} (have {list(minfo.labels.values())})")
    if not 0 <= price_1e36 <= MAX_UINT:
        raise DevnetError(f"{price_1e36} is not a uint256 price")
    old = await get_morpho_price(w3, minfo, mid)
    if timestamp is not None:
        await rpc(w3, "evm_setNextBlockTimestamp", [timestamp])
    data = calldata(load_morpho("OracleMock").abi, "setPrice", [price_1e36])
    tx = {"from": minfo.owner, "to": minfo.oracles[mid], "data": data, "gas": hex(PRICE_GAS)}
    tx_hash = await rpc(w3, "eth_sendTransaction", [tx])
    receipt = await wait_receipt(w3, tx_hash)
    if int(receipt["status"], 16) != 1:
        raise DevnetError(f"setPrice on {minfo.labels[mid]} oracle reverted (tx {tx_hash})")
    block = await w3.eth.get_block(int(receipt["blockNumber"], 16))
    return MorphoPriceChange(mid, old, price_1e36, tx_hash, int(block["number"]),
                             int(block["timestamp"]))
