"""The devnet's Python API, for tests, benchmarks and the ``keeper devnet`` commands.

::

    proc = start_anvil(port=0)                                 # keeper.devnet.anvil
    info = await deploy(proc.rpc_url, n_borrowers=30, seed=1)  # -> DevnetInfo
    w3 = connect(info.rpc_url)                                 # AsyncWeb3, long timeout
    change = await set_price(w3, info, "WETH", 1_400 * 10**8)  # -> PriceChange (mined)
    await set_price(w3, info, "WETH", p, timestamp=ts)         # same-second block: no interest
    await get_price(w3, info, "WETH")                          # feed answer, 8 decimals
    await set_feed_updated_at(w3, info, "WETH", ts)            # make a feed look stale
    ts = await advance_time(w3, 86_400)                        # increaseTime + mine
    new = apply_price_change(old_e8, "-30%")                   # or "+10%", "1500.25"
    borrower_key(info.seed, 0)                                 # a borrower's private key
    receipt = await wait_receipt(w3, tx_hash)                  # after any eth_sendTransaction
    stop_anvil(proc.pid)

``deploy`` needs a fresh anvil on chain id 31337 with anvil's default mnemonic (as
``start_anvil`` starts it: account 0, the deployer and feed owner, stays unlocked for
``set_price``). It turns automine off and auto-impersonation on for set-up, and restores
both (automine on, impersonation off) before it returns, so the chain then behaves like a
normal node. Time: ~0.6 s for 50 borrowers, ~2 s for 1,000, ~16 s for 10,000.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from eth_utils import keccak
from web3 import AsyncWeb3

from keeper.devnet import params
from keeper.devnet.accounts import (
    DEPLOYER,
    LIQUIDATOR,
    SPARE,
    TREASURY,
    anvil_account,
    derived_accounts,
    derived_key,
)
from keeper.devnet.anvil import CHAIN_ID
from keeper.devnet.artifacts import load_own
from keeper.devnet.aave36 import RULES, deploy_market36, plan_rule_borrowers
from keeper.devnet.deploy import deploy_market
from keeper.devnet.rpc import TxQueue, calldata, connect, rpc, wait_receipt
from keeper.devnet.seed import plan_borrowers, seed_positions
from keeper.devnet.state import DevnetInfo
from keeper.errors import DevnetError
from keeper.units import BPS, parse_fixed

__all__ = [
    "PriceChange",
    "advance_time",
    "apply_price_change",
    "borrower_key",
    "connect",
    "deploy",
    "get_price",
    "set_feed_updated_at",
    "set_price",
    "wait_receipt",
]

DEPLOYER_ETH = 10**6 * 10**18
AAVE_VERSIONS = ("3.0.2", "3.6")
FEED_GAS = 200_000


async def deploy(rpc_url: str, n_borrowers: int = 20, seed: int = 1,
                 aave: str = "3.0.2") -> DevnetInfo:
    """Deploy the Aave V3 market, lenders and ``n_borrowers`` borrowers on a fresh anvil.

    ``aave``: "3.0.2" (npm @aave/core-v3 artifacts) or "3.6" (npm @aave-dao/aave-v3-origin
    sources, keeper.devnet.aave36); 3.6 adds the three 3.3-rule borrowers (``rule_borrowers``)."""
    if n_borrowers < 0:
        raise DevnetError("n_borrowers must be >= 0")
    if aave not in AAVE_VERSIONS:
        raise DevnetError(f"unknown Aave version {aave!r} (have {', '.join(AAVE_VERSIONS)})")
    extra = None
    w3 = connect(rpc_url)
    try:
        chain_id = int(await rpc(w3, "eth_chainId", []), 16)
        if chain_id != CHAIN_ID:
            raise DevnetError(f"{rpc_url} has chain id {chain_id}, not the devnet's {CHAIN_ID}")
        deployer = anvil_account(DEPLOYER).address
        await rpc(w3, "anvil_setBalance", [deployer, hex(DEPLOYER_ETH)])
        await rpc(w3, "evm_setAutomine", [False])
        await rpc(w3, "anvil_autoImpersonateAccount", [True])
        try:
            txs = TxQueue(w3)
            if aave == "3.6":
                market, extra = await deploy_market36(w3, txs)
            else:
                market = await deploy_market(w3, txs)
            lenders = derived_accounts("lender", seed, len(params.RESERVES))
            borrowers = derived_accounts("borrower", seed, n_borrowers)
            plans = plan_borrowers(n_borrowers, seed, borrowers)
            if extra is not None:
                rules = plan_rule_borrowers(derived_accounts("rule-borrower", seed, 3), n_borrowers)
                plans += rules
            await seed_positions(w3, txs, market, plans, lenders)
        except BaseException:
            with contextlib.suppress(DevnetError):  # keep the first error, not the clean-up's
                await _normal_mining(w3)
            raise
        await _normal_mining(w3)
    finally:
        await w3.provider.disconnect()
    return DevnetInfo(
        rpc_url=rpc_url,
        chain_id=chain_id,
        seed=seed,
        deploy_block=market.deploy_block,
        deployer=deployer,
        liquidator=anvil_account(LIQUIDATOR).address,
        treasury=anvil_account(TREASURY).address,
        spare=tuple(anvil_account(i).address for i in SPARE),
        pool_addresses_provider=market.pool_addresses_provider,
        pool=market.pool,
        pool_configurator=market.pool_configurator,
        acl_manager=market.acl_manager,
        oracle=market.oracle,
        data_provider=market.data_provider,
        multicall3=market.multicall3,
        tokens=market.tokens,
        decimals={r.symbol: r.decimals for r in params.RESERVES},
        feeds=market.feeds,
        a_tokens=market.a_tokens,
        variable_debt_tokens=market.variable_debt_tokens,
        stable_debt_tokens=market.stable_debt_tokens,
        rate_strategies=market.rate_strategies,
        emode_categories={e.id: e.label for e in params.EMODES},
        lenders=tuple(a.address for a in lenders),
        borrowers=tuple(p.account.address for p in plans),
        positions=tuple(p.to_json() for p in plans),
        dev_keys={
            "deployer": anvil_account(DEPLOYER).private_key,
            "liquidator": anvil_account(LIQUIDATOR).private_key,
        },
        aave_version=aave,
        liquidation_data_provider=extra.liquidation_data_provider if extra else "",
        rule_borrowers=dict(zip(RULES, (p.account.address for p in rules))) if extra else {},
    )


async def _normal_mining(w3: AsyncWeb3) -> None:
    await rpc(w3, "anvil_autoImpersonateAccount", [False])
    await rpc(w3, "evm_setAutomine", [True])


def borrower_key(seed: int, index: int) -> str:
    """Private key of borrower ``index`` of a devnet deployed with ``seed`` (devnet only)."""
    return derived_key("borrower", seed, index)


@dataclass(frozen=True, slots=True)
class PriceChange:
    symbol: str
    old_e8: int
    new_e8: int
    tx_hash: str
    block: int
    timestamp: int


def _feed(w3: AsyncWeb3, info: DevnetInfo, symbol: str):  # noqa: ANN202 (web3 contract type)
    try:
        address = info.feeds[symbol.upper()]
    except KeyError as e:
        raise DevnetError(f"no devnet feed for {symbol!r} (have {sorted(info.feeds)})") from e
    return w3.eth.contract(address=address, abi=load_own("PriceFeed").abi)


async def get_price(w3: AsyncWeb3, info: DevnetInfo, symbol: str) -> int:
    """The feed's latest answer (USD, 8 decimals)."""
    return int(await _feed(w3, info, symbol).functions.latestAnswer().call())


async def _send_as_deployer(
    w3: AsyncWeb3, info: DevnetInfo, to: str, data: str, what: str, timestamp: int | None = None
) -> dict:
    """Send one tx from the feeds' owner, make sure it is mined, check it succeeded."""
    if timestamp is not None:
        await rpc(w3, "evm_setNextBlockTimestamp", [timestamp])
    tx = {"from": info.deployer, "to": to, "data": data, "gas": hex(FEED_GAS)}
    tx_hash = await rpc(w3, "eth_sendTransaction", [tx])
    receipt = await wait_receipt(w3, tx_hash)
    if int(receipt["status"], 16) != 1:
        raise DevnetError(f"{what} reverted (tx {tx_hash})")
    return receipt


async def set_price(
    w3: AsyncWeb3, info: DevnetInfo, symbol: str, new_answer_e8: int, *, timestamp: int | None = None
) -> PriceChange:
    """Move ``symbol``'s feed to ``new_answer_e8`` with a real, mined ``setAnswer`` transaction.

    Any int256 is accepted (a zero or negative answer makes AaveOracle revert for the asset,
    which is what staleness / bad-feed tests want). ``timestamp`` sets the mining block's
    timestamp (``evm_setNextBlockTimestamp``; anvil accepts the latest block's own timestamp):
    pass the latest block's timestamp to move the price without any interest accruing, e.g.
    to compare a what-if at block N with the real move at N+1 to the wei.
    """
    if not -(2**255) <= new_answer_e8 < 2**255:
        raise DevnetError(f"{new_answer_e8} does not fit an int256 answer")
    feed = _feed(w3, info, symbol)
    old = int(await feed.functions.latestAnswer().call())
    data = calldata(load_own("PriceFeed").abi, "setAnswer", [new_answer_e8])
    receipt = await _send_as_deployer(
        w3, info, feed.address, data, f"setAnswer on {symbol} feed", timestamp
    )
    block = await w3.eth.get_block(int(receipt["blockNumber"], 16))
    return PriceChange(
        symbol=symbol.upper(),
        old_e8=old,
        new_e8=new_answer_e8,
        tx_hash=receipt["transactionHash"],
        block=int(block["number"]),
        timestamp=int(block["timestamp"]),
    )


async def set_feed_updated_at(w3: AsyncWeb3, info: DevnetInfo, symbol: str, updated_at: int) -> None:
    """Rewrite the feed's latest ``updatedAt`` (e.g. an hour ago, to look stale)."""
    feed = _feed(w3, info, symbol)
    data = calldata(load_own("PriceFeed").abi, "setUpdatedAt", [updated_at])
    await _send_as_deployer(w3, info, feed.address, data, f"setUpdatedAt on {symbol} feed")


async def advance_time(w3: AsyncWeb3, seconds: int) -> int:
    """Move chain time forward by ``seconds`` and mine a block; returns its timestamp."""
    if seconds < 0:
        raise DevnetError("time only moves forward")
    await rpc(w3, "evm_increaseTime", [seconds])
    await rpc(w3, "evm_mine", [])
    block = await w3.eth.get_block("latest")
    return int(block["timestamp"])


def apply_price_change(old_e8: int, value: str) -> int:
    """``"-30%"`` / ``"+10%"`` / ``"2.5%"`` relative to ``old_e8``, or an absolute USD price.

    Relative: ``old * (10000 + bps) // 10000`` with the percentage parsed exactly to bps.
    Absolute: ``"1500"`` / ``"1500.25"`` parsed exactly to 8 decimals. No float anywhere.
    """
    text = value.strip()
    try:
        if text.endswith("%"):
            bps = parse_fixed(text[:-1], 2)  # percent with 2 decimals == bps
            if bps <= -BPS:
                raise DevnetError(f"{value!r} would take the price to zero or below")
            return old_e8 * (BPS + bps) // BPS
        return parse_fixed(text, params.PRICE_DECIMALS)
    except ValueError as e:
        raise DevnetError(f"bad price {value!r}: {e} (use e.g. -30%, +10%, 1500.25)") from e


async def mint(w3: AsyncWeb3, info: DevnetInfo, symbol: str, to: str, amount: int) -> None:
    """Mint ``amount`` (token units) of a devnet token to ``to`` (the devnet's test tokens are
    Aave's MintableERC20), with a real, mined transaction."""
    try:
        token = info.tokens[symbol.upper()]
    except KeyError as e:
        raise DevnetError(f"no devnet token {symbol!r} (have {sorted(info.tokens)})") from e
    data = "0x" + (keccak(text="mint(address,uint256)")[:4] + bytes(12) + bytes.fromhex(to[2:])
                   + amount.to_bytes(32, "big")).hex()
    await _send_as_deployer(w3, info, token, data, f"mint {amount} {symbol} to {to}")
