"""Deploy a real Aave V3 market (npm @aave/core-v3 1.19.x bytecode) on a fresh anvil.

Follows @aave/deploy-v3's order (deploy/02_market/*): PoolAddressesProvider, ACL admin and
ACLManager with the pool / risk / emergency admin roles, Pool and PoolConfigurator
implementations linked to their logic libraries, ``setPoolImpl`` / ``setPoolConfiguratorImpl``
(the provider deploys the proxies), AaveOracle (USD, 1e8) over keeper's PriceFeed contracts,
AaveProtocolDataProvider, token implementations, ``initReserves``, then the risk parameters
(collateral, borrowing, reserve factor, caps, liquidation protocol fee, flash loans, e-mode).
The deployer (anvil account 0) keeps every admin role. Multicall3 is installed at its
canonical address. Each stage is one block (automine off): three blocks in all.

API::

    market = await deploy_market(w3, txs)   # -> Market (addresses); txs is a rpc.TxQueue
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from web3 import AsyncWeb3

from keeper.devnet import params
from keeper.devnet.accounts import DEPLOYER, TREASURY, anvil_account
from keeper.devnet.artifacts import (
    Artifact,
    link,
    load_aave,
    load_own,
    multicall3_creation_code,
)
from keeper.devnet.rpc import TxQueue, constructor_args, rpc
from keeper.errors import DevnetError

MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11"
ZERO = "0x0000000000000000000000000000000000000000"
POOL_LIBRARIES = (
    "BorrowLogic", "BridgeLogic", "EModeLogic", "FlashLoanLogic",
    "LiquidationLogic", "PoolLogic", "SupplyLogic",
)  # fmt: skip
DEPLOY_GAS = 15_000_000
CALL_GAS = 2_000_000
INIT_RESERVES_GAS = 40_000_000


@dataclass(frozen=True, slots=True)
class Market:
    pool_addresses_provider: str
    pool: str
    pool_configurator: str
    acl_manager: str
    oracle: str
    data_provider: str
    multicall3: str
    tokens: dict[str, str]  # symbol -> underlying (MintableERC20)
    feeds: dict[str, str]  # symbol -> PriceFeed
    a_tokens: dict[str, str]
    variable_debt_tokens: dict[str, str]
    stable_debt_tokens: dict[str, str]
    rate_strategies: dict[str, str]  # strategy name -> address
    deploy_block: int  # block holding the first deployment transaction


class _Deployer:
    """Queues creations and calls from the deployer account."""

    def __init__(self, txs: TxQueue, sender: str):
        self.txs = txs
        self.sender = sender

    def create(self, art: Artifact, args: list, label: str, code: str | None = None) -> str:
        creation = (code or art.bytecode) + constructor_args(art.abi, args)
        return self.txs.deploy(self.sender, creation, gas=DEPLOY_GAS, label=f"deploy {label}")

    def call(self, art: Artifact, to: str, fn: str, *args: object, gas: int = CALL_GAS) -> None:
        self.txs.call(self.sender, to, art.abi, fn, args, gas=gas, label=f"{art.name}.{fn}")


def _deploy_libraries(d: _Deployer, names: tuple[str, ...]) -> dict[str, str]:
    """Deploy libraries, each after the libraries it links (FlashLoanLogic links BorrowLogic)."""
    done: dict[str, str] = {}
    todo = list(names)
    while todo:
        ready = [n for n in todo if load_aave(n).libraries() <= done.keys()]
        if not ready:
            raise DevnetError(f"libraries link each other in a cycle or link unknown ones: {todo}")
        for name in ready:
            art = load_aave(name)
            done[name] = d.create(art, [], name, link(art, done))
            todo.remove(name)
    return done


def _queue_core(d: _Deployer) -> dict[str, Any]:
    """Stage 1: tokens, feeds, libraries, Multicall3, provider, ACL, pool, oracle, data provider."""
    me = d.sender
    erc20, feed = load_aave("MintableERC20"), load_own("PriceFeed")
    out: dict[str, Any] = {}
    out["tokens"] = {
        r.symbol: d.create(erc20, [r.name, r.symbol, r.decimals], r.symbol) for r in params.RESERVES
    }
    out["feeds"] = {
        r.symbol: d.create(
            feed, [params.PRICE_DECIMALS, f"{r.symbol} / USD (devnet)", r.price_e8], f"{r.symbol} feed"
        )
        for r in params.RESERVES
    }
    libs = _deploy_libraries(d, (*POOL_LIBRARIES, "ConfiguratorLogic"))
    out["multicall3_deployed"] = d.txs.deploy(
        me, multicall3_creation_code(), gas=DEPLOY_GAS, label="deploy Multicall3"
    )

    pap, acl_art = load_aave("PoolAddressesProvider"), load_aave("ACLManager")
    provider = out["provider"] = d.create(pap, [params.MARKET_ID, me], "PoolAddressesProvider")
    d.call(pap, provider, "setACLAdmin", me)
    acl = out["acl"] = d.create(acl_art, [provider], "ACLManager")
    d.call(pap, provider, "setACLManager", acl)
    for role in ("addPoolAdmin", "addRiskAdmin", "addEmergencyAdmin"):
        d.call(acl_art, acl, role, me)

    pool_art, conf_art = load_aave("Pool"), load_aave("PoolConfigurator")
    pool_impl = d.create(pool_art, [provider], "Pool implementation", link(pool_art, libs))
    d.call(pool_art, pool_impl, "initialize", provider)
    conf_impl = d.create(conf_art, [], "PoolConfigurator implementation", link(conf_art, libs))
    d.call(conf_art, conf_impl, "initialize", provider)
    d.call(pap, provider, "setPoolImpl", pool_impl, gas=DEPLOY_GAS)  # deploys the Pool proxy
    d.call(pap, provider, "setPoolConfiguratorImpl", conf_impl, gas=DEPLOY_GAS)

    assets = [out["tokens"][r.symbol] for r in params.RESERVES]
    sources = [out["feeds"][r.symbol] for r in params.RESERVES]
    oracle_args = [provider, assets, sources, ZERO, ZERO, 10**params.PRICE_DECIMALS]
    oracle = out["oracle"] = d.create(load_aave("AaveOracle"), oracle_args, "AaveOracle")
    d.call(pap, provider, "setPriceOracle", oracle)
    dp_art = load_aave("AaveProtocolDataProvider")
    data_provider = out["data_provider"] = d.create(dp_art, [provider], "AaveProtocolDataProvider")
    d.call(pap, provider, "setPoolDataProvider", data_provider)

    irs = load_aave("DefaultReserveInterestRateStrategy")
    strategies = {r.strategy.name: r.strategy for r in params.RESERVES}
    out["rate_strategies"] = {
        name: d.create(irs, [provider, *s.args()], name) for name, s in strategies.items()
    }
    return out


def _queue_reserves(
    d: _Deployer, pool: str, configurator: str, core: dict[str, Any]
) -> None:
    """Stage 2: token implementations, initReserves, then every risk parameter."""
    impls = {}
    for name in ("AToken", "StableDebtToken", "VariableDebtToken"):
        art = load_aave(name)
        impls[name] = d.create(art, [pool], f"{name} implementation")
        tail = [ZERO, ZERO, 0, f"{name}_IMPL", f"{name}_IMPL", b"\x00"]  # as @aave/deploy-v3
        d.call(art, impls[name], "initialize", pool, *([ZERO] if name == "AToken" else []), *tail)
    treasury = anvil_account(TREASURY).address
    tokens = core["tokens"]
    inputs = [
        (
            impls["AToken"], impls["StableDebtToken"], impls["VariableDebtToken"], r.decimals,
            core["rate_strategies"][r.strategy.name], tokens[r.symbol], treasury, ZERO,
            f"Aave Devnet {r.symbol}", f"aDev{r.symbol}",
            f"Aave Devnet Variable Debt {r.symbol}", f"variableDebtDev{r.symbol}",
            f"Aave Devnet Stable Debt {r.symbol}", f"stableDebtDev{r.symbol}", b"\x10",
        )
        for r in params.RESERVES
    ]  # fmt: skip
    conf = load_aave("PoolConfigurator")
    d.call(conf, configurator, "initReserves", inputs, gas=INIT_RESERVES_GAS)
    for r in params.RESERVES:
        asset = tokens[r.symbol]
        d.call(conf, configurator, "configureReserveAsCollateral",
               asset, r.ltv_bps, r.liquidation_threshold_bps, r.liquidation_bonus_bps)  # fmt: skip
        d.call(conf, configurator, "setReserveBorrowing", asset, True)
        d.call(conf, configurator, "setReserveFlashLoaning", asset, True)
        d.call(conf, configurator, "setReserveFactor", asset, r.reserve_factor_bps)
        d.call(conf, configurator, "setSupplyCap", asset, r.supply_cap)
        d.call(conf, configurator, "setBorrowCap", asset, r.borrow_cap)
        d.call(conf, configurator, "setLiquidationProtocolFee", asset, r.liquidation_protocol_fee_bps)
    for e in params.EMODES:
        d.call(conf, configurator, "setEModeCategory", e.id, e.ltv_bps,
               e.liquidation_threshold_bps, e.liquidation_bonus_bps, ZERO, e.label)  # fmt: skip
    for r in params.RESERVES:
        if r.emode_category:
            d.call(conf, configurator, "setAssetEModeCategory", tokens[r.symbol], r.emode_category)
    d.call(conf, configurator, "updateFlashloanPremiumTotal", params.FLASHLOAN_PREMIUM_TOTAL_BPS)
    d.call(conf, configurator, "updateFlashloanPremiumToProtocol",
           params.FLASHLOAN_PREMIUM_PROTOCOL_BPS)  # fmt: skip


async def deploy_market(w3: AsyncWeb3, txs: TxQueue) -> Market:
    """Deploy and configure the market; automine must be off (``mine`` is called per stage)."""
    deployer = anvil_account(DEPLOYER).address
    await txs.load_nonces([deployer])
    d = _Deployer(txs, deployer)
    deploy_block = int(await rpc(w3, "eth_blockNumber", []), 16) + 1

    core = _queue_core(d)
    await txs.mine()
    provider = w3.eth.contract(address=core["provider"], abi=load_aave("PoolAddressesProvider").abi)
    pool = await provider.functions.getPool().call()
    configurator = await provider.functions.getPoolConfigurator().call()
    if pool == ZERO or configurator == ZERO:
        raise DevnetError("PoolAddressesProvider did not create the Pool / PoolConfigurator proxies")

    _queue_reserves(d, pool, configurator, core)
    await txs.mine()

    # Multicall3: copy the runtime code the creation code produced to the canonical address.
    code = await rpc(w3, "eth_getCode", [core["multicall3_deployed"], "latest"])
    if not code or code == "0x":
        raise DevnetError("Multicall3 creation code deployed no runtime code")
    await rpc(w3, "anvil_setCode", [MULTICALL3, code])

    dp = w3.eth.contract(address=core["data_provider"], abi=load_aave("AaveProtocolDataProvider").abi)
    a_tokens, stable, variable = {}, {}, {}
    for symbol, asset in core["tokens"].items():
        a, s, v = await dp.functions.getReserveTokensAddresses(asset).call()
        if ZERO in (a, s, v):
            raise DevnetError(f"reserve {symbol} was not initialised")
        a_tokens[symbol], stable[symbol], variable[symbol] = a, s, v

    return Market(
        pool_addresses_provider=core["provider"],
        pool=pool,
        pool_configurator=configurator,
        acl_manager=core["acl"],
        oracle=core["oracle"],
        data_provider=core["data_provider"],
        multicall3=MULTICALL3,
        tokens=core["tokens"],
        feeds=core["feeds"],
        a_tokens=a_tokens,
        variable_debt_tokens=variable,
        stable_debt_tokens=stable,
        rate_strategies=core["rate_strategies"],
        deploy_block=deploy_block,
    )
