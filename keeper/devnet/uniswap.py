"""Uniswap V3 on the devnet: the real bytecode of npm ``@uniswap/v3-core`` 1.0.1
(UniswapV3Factory, UniswapV3Pool) and ``@uniswap/v3-periphery`` 1.4.4 (SwapRouter,
NonfungiblePositionManager, lens/QuoterV2), pools for every pair a liquidator needs, and
an arbitrageur that trades them back to the oracle price.

::

    uinfo = await deploy_uniswap(w3, info)          # -> UniswapInfo (after the Aave devnet)
    await align_pools(w3, info, uinfo)              # swap every pool back to the feeds' prices
    load_uniswap("SwapRouter")                      # Artifact

The periphery computes pool addresses with its baked-in ``POOL_INIT_CODE_HASH``
(``contracts/libraries/PoolAddress.sol``); ``check_init_code_hash`` compares it with the
keccak of the core ``UniswapV3Pool`` creation code before anything is deployed, so the
router, position manager and quoter find the pools of our factory.

Pools: every pair of the devnet's tokens (WETH, WBTC, USDC, DAI: the collateral/debt pairs
of Aave, Morpho Blue and the Comet stand-in) at 0.05% and 0.3%, initialised at the feeds'
prices (``sqrt_price_x96_for``), each with one full-range position worth ``DEPTH_USD`` a side
(minted by the deployer through the position manager). Full range behaves like x*y=k: a
swap of $1M moves a pool's price by about 2 * 1M / DEPTH_USD = 1%. Everything is sent with
automine on, one transaction a block (pool creation takes ~5M gas; a batch could overflow
a block, and anvil then drops the sender's later transactions).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from functools import cache
from itertools import combinations
from math import isqrt
from typing import Any

from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from web3 import AsyncWeb3

from keeper.devnet.api import get_price
from keeper.devnet.artifacts import NODE_MODULES, Artifact, load_aave
from keeper.devnet.rpc import calldata, constructor_args, rpc, wait_receipt
from keeper.devnet.state import DevnetInfo
from keeper.errors import DevnetError

CORE = NODE_MODULES / "@uniswap" / "v3-core"
PERIPHERY = NODE_MODULES / "@uniswap" / "v3-periphery"
PATHS = {
    "UniswapV3Factory": CORE / "artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json",
    "UniswapV3Pool": CORE / "artifacts/contracts/UniswapV3Pool.sol/UniswapV3Pool.json",
    "SwapRouter": PERIPHERY / "artifacts/contracts/SwapRouter.sol/SwapRouter.json",
    "NonfungiblePositionManager":
        PERIPHERY / "artifacts/contracts/NonfungiblePositionManager.sol/NonfungiblePositionManager.json",
    "QuoterV2": PERIPHERY / "artifacts/contracts/lens/QuoterV2.sol/QuoterV2.json",
}
POOL_ADDRESS_SOL = PERIPHERY / "contracts/libraries/PoolAddress.sol"
FEES = (500, 3000)
TICK_SPACING = {500: 10, 3000: 60}
DEPTH_USD = 200_000_000  # per side of each pool
DEPLOY_GAS, CREATE_POOL_GAS, CALL_GAS, MINT_GAS, SWAP_GAS = 8_000_000, 6_000_000, 200_000, 1_500_000, 1_000_000
MAX_UINT = 2**256 - 1
FAR_DEADLINE = 2**64


@cache
def load_uniswap(name: str) -> Artifact:
    """A hardhat artifact of npm @uniswap/v3-core or v3-periphery (see ``PATHS``)."""
    path = PATHS.get(name)
    if path is None:
        raise DevnetError(f"no Uniswap artifact known for {name!r} (have {sorted(PATHS)})")
    if not path.is_file():
        raise DevnetError(f"Uniswap V3 artifact missing: {path} (run `npm install`; make does it)")
    data = json.loads(path.read_text())
    return Artifact(name, data["abi"], data["bytecode"], data.get("linkReferences") or {}, str(path),
                    data.get("deployedBytecode", ""))


def periphery_init_code_hash() -> str:
    """The POOL_INIT_CODE_HASH the periphery was compiled with (its PoolAddress.sol)."""
    if not POOL_ADDRESS_SOL.is_file():
        raise DevnetError(f"missing {POOL_ADDRESS_SOL} (run `npm install`)")
    m = re.search(r"POOL_INIT_CODE_HASH\s*=\s*(0x[0-9a-fA-F]{64})", POOL_ADDRESS_SOL.read_text())
    if not m:
        raise DevnetError(f"POOL_INIT_CODE_HASH not found in {POOL_ADDRESS_SOL}")
    return m.group(1).lower()


def pool_init_code_hash() -> str:
    """keccak256 of the core UniswapV3Pool creation code."""
    return "0x" + keccak(hexstr=load_uniswap("UniswapV3Pool").bytecode).hex()


def check_init_code_hash() -> str:
    """Raise DevnetError unless the periphery's baked-in hash is the core pool's; return it."""
    core, periphery = pool_init_code_hash(), periphery_init_code_hash()
    if core != periphery:
        raise DevnetError(f"v3-core UniswapV3Pool hashes to {core}, but v3-periphery expects "
                          f"{periphery}: its router and quoter would not find our pools")
    return core


def pool_address(factory: str, token_a: str, token_b: str, fee: int) -> str:
    """PoolAddress.computeAddress: CREATE2 by the factory, salt keccak(token0, token1, fee)."""
    t0, t1 = sorted((token_a, token_b), key=str.lower)
    salt = keccak(encode(["address", "address", "uint24"], [t0, t1, fee]))
    raw = keccak(b"\xff" + bytes.fromhex(factory[2:]) + salt + bytes.fromhex(check_init_code_hash()[2:]))
    return to_checksum_address(raw[12:])


def sqrt_price_x96_for(price0_e8: int, dec0: int, price1_e8: int, dec1: int) -> int:
    """sqrtPriceX96 of a pool whose token0 is worth ``price0_e8`` USD and token1 ``price1_e8``:
    price = token1 base units per token0 base unit = p0 * 10^dec1 / (p1 * 10^dec0), floored."""
    return isqrt(price0_e8 * 10**dec1 * (1 << 192) // (price1_e8 * 10**dec0))


def full_range(fee: int) -> tuple[int, int]:
    s = TICK_SPACING[fee]
    top = 887272 // s * s
    return -top, top


@dataclass(frozen=True)
class PoolInfo:
    address: str
    token0: str
    token1: str
    symbol0: str
    symbol1: str
    fee: int


@dataclass(frozen=True)
class UniswapInfo:
    factory: str
    router: str
    position_manager: str
    quoter: str
    pools: tuple[PoolInfo, ...]
    init_code_hash: str

    def pool(self, a: str, b: str, fee: int) -> PoolInfo:
        """The pool of symbols (or addresses) ``a`` and ``b`` at ``fee``."""
        want = {a.lower(), b.lower()}
        for p in self.pools:
            if p.fee == fee and want in ({p.symbol0.lower(), p.symbol1.lower()},
                                         {p.token0.lower(), p.token1.lower()}):
                return p
        raise KeyError(f"no pool {a}/{b} at fee {fee}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UniswapInfo:
        d = dict(data)
        d["pools"] = tuple(PoolInfo(**p) for p in d["pools"])
        return cls(**d)


async def _send(w3: AsyncWeb3, sender: str, to: str | None, data: str, gas: int, what: str) -> dict:
    tx: dict[str, Any] = {"from": sender, "data": data, "gas": hex(gas)}
    if to is not None:
        tx["to"] = to
    receipt = await wait_receipt(w3, await rpc(w3, "eth_sendTransaction", [tx]))
    if int(receipt["status"], 16) != 1:
        raise DevnetError(f"{what} reverted (tx {receipt['transactionHash']})")
    return receipt


async def _deploy(w3: AsyncWeb3, sender: str, name: str, args: list) -> str:
    art = load_uniswap(name)
    receipt = await _send(w3, sender, None, art.bytecode + constructor_args(art.abi, args),
                          DEPLOY_GAS, f"deploy {name}")
    return to_checksum_address(receipt["contractAddress"])


async def deploy_uniswap(w3: AsyncWeb3, info: DevnetInfo) -> UniswapInfo:
    """Factory, router, position manager, quoter and every pool with its liquidity.
    Automine must be on (it is after ``deploy``)."""
    init_hash = check_init_code_hash()
    me = info.deployer
    weth = info.tokens["WETH"]  # the periphery wants a WETH9; we never pay with native ETH
    factory = await _deploy(w3, me, "UniswapV3Factory", [])
    router = await _deploy(w3, me, "SwapRouter", [factory, weth])
    npm = await _deploy(w3, me, "NonfungiblePositionManager", [factory, weth, info.treasury])
    quoter = await _deploy(w3, me, "QuoterV2", [factory, weth])
    fabi, pabi, nabi = (load_uniswap(n).abi for n in
                        ("UniswapV3Factory", "UniswapV3Pool", "NonfungiblePositionManager"))
    erc20 = load_aave("MintableERC20").abi
    usd = {s: await get_price(w3, info, s) for s in info.tokens}
    for s, token in info.tokens.items():  # enough for every pool holding it, then approve
        n_pools = (len(info.tokens) - 1) * len(FEES)
        amount = n_pools * DEPTH_USD * 10 ** info.decimals[s] * 10**8 // usd[s] * 2
        await _send(w3, me, token, calldata(erc20, "mint", [me, amount]), CALL_GAS, f"mint {s}")
        await _send(w3, me, token, calldata(erc20, "approve", [npm, MAX_UINT]), CALL_GAS, f"approve {s}")
    pools = []
    for (sa, ta), (sb, tb) in combinations(sorted(info.tokens.items()), 2):
        (s0, t0), (s1, t1) = sorted(((sa, ta), (sb, tb)), key=lambda x: x[1].lower())
        for fee in FEES:
            address = pool_address(factory, t0, t1, fee)
            await _send(w3, me, factory, calldata(fabi, "createPool", [t0, t1, fee]),
                        CREATE_POOL_GAS, f"createPool {s0}/{s1} {fee}")
            price = sqrt_price_x96_for(usd[s0], info.decimals[s0], usd[s1], info.decimals[s1])
            await _send(w3, me, address, calldata(pabi, "initialize", [price]), CALL_GAS,
                        f"initialize {s0}/{s1} {fee}")
            lo, hi = full_range(fee)
            a0 = DEPTH_USD * 10 ** info.decimals[s0] * 10**8 // usd[s0]
            a1 = DEPTH_USD * 10 ** info.decimals[s1] * 10**8 // usd[s1]
            params = (t0, t1, fee, lo, hi, a0, a1, 0, 0, me, FAR_DEADLINE)
            await _send(w3, me, npm, calldata(nabi, "mint", [params]), MINT_GAS,
                        f"mint liquidity {s0}/{s1} {fee}")
            pools.append(PoolInfo(address, t0, t1, s0, s1, fee))
    return UniswapInfo(factory, router, npm, quoter, tuple(pools), init_hash)


async def align_pools(w3: AsyncWeb3, info: DevnetInfo, uinfo: UniswapInfo,
                      symbols: set[str] | None = None) -> list[tuple[PoolInfo, int, int]]:
    """Arbitrage every pool (that trades one of ``symbols``; default all) back to the feeds'
    prices with real ``exactInputSingle`` swaps from the deployer, each stopped at the
    target price by ``sqrtPriceLimitX96``. Returns (pool, sqrt price before, after)."""
    me = info.deployer
    usd = {s: await get_price(w3, info, s) for s in info.tokens}
    pabi, rabi = load_uniswap("UniswapV3Pool").abi, load_uniswap("SwapRouter").abi
    erc20 = load_aave("MintableERC20").abi
    moved = []
    for p in uinfo.pools:
        if symbols is not None and not {p.symbol0.upper(), p.symbol1.upper()} & symbols:
            continue
        target = sqrt_price_x96_for(usd[p.symbol0], info.decimals[p.symbol0],
                                    usd[p.symbol1], info.decimals[p.symbol1])
        slot0 = await rpc(w3, "eth_call", [{"to": p.address, "data": calldata(pabi, "slot0", [])}, "latest"])
        current = int(slot0[2:66], 16)
        if current == target:
            continue
        zero_for_one = current > target  # selling token0 lowers the price
        token_in, token_out = (p.token0, p.token1) if zero_for_one else (p.token1, p.token0)
        held = await rpc(w3, "eth_call", [{"to": token_in, "data": calldata(erc20, "balanceOf", [p.address])},
                                          "latest"])
        amount = 4 * int(held, 16) + 10**30  # more than any move needs: the limit stops the swap
        await _send(w3, me, token_in, calldata(erc20, "mint", [me, amount]), CALL_GAS, "mint for arbitrage")
        await _send(w3, me, token_in, calldata(erc20, "approve", [uinfo.router, amount]), CALL_GAS,
                    "approve router")
        args = (token_in, token_out, p.fee, me, FAR_DEADLINE, amount, 0, target)
        await _send(w3, me, uinfo.router, calldata(rabi, "exactInputSingle", [args]), SWAP_GAS,
                    f"arbitrage {p.symbol0}/{p.symbol1} {p.fee}")
        await _send(w3, me, token_in, calldata(erc20, "approve", [uinfo.router, 0]), CALL_GAS,
                    "reset approval")
        moved.append((p, current, target))
    return moved


async def deploy_devnet_liquidator(rpc_url: str, owner_key: str, router: str) -> str:
    """keeper's KeeperLiquidator, deployed as ``keeper liquidator deploy`` does (signed locally
    with ``owner_key``, a devnet key; simulated first)."""
    from keeper.chain.rpc import Rpc
    from keeper.config_types import Secret
    from keeper.executors.signer import Signer
    from keeper.liquidator_deploy import deploy_liquidator

    rpc = Rpc(rpc_url, timeout_s=60.0)
    try:
        return await deploy_liquidator(rpc, Signer(Secret(owner_key)), router)
    finally:
        await rpc.close()


def dex_config_toml(uinfo: UniswapInfo, liquidator: str | None) -> str:
    """The devnet config's ``[dex]`` table and the liquidator contract."""
    text = (f'\n[dex]  # Uniswap V3 from npm v3-core 1.0.1 / v3-periphery 1.4.4, deployed on the devnet\n'
            f'uniswap_v3_factory = "{uinfo.factory}"\nuniswap_v3_router = "{uinfo.router}"\n'
            f'uniswap_v3_quoter = "{uinfo.quoter}"\n')
    if liquidator:
        text += f'\n[liquidator]\ncontract = "{liquidator}"  # KeeperLiquidator, owned by the devnet liquidator\n'
    return text
