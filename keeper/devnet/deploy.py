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
from keeper.devnet.rpc import TxQueue, calldata, constructor_args, rpc
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

    def call(self, art: Artifact, to: str, fn: str, args: list, gas: int = CALL_GAS) -> None:
        self.txs.add(self.sender, to, calldata(art.abi, fn, args), gas=gas, label=f"{art.name}.{fn}")


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


async def deploy_market(w3: AsyncWeb3, txs: TxQueue) -> Market:
    """Deploy and configure the market; automine must be off (``mine`` is called per stage)."""
    deployer = anvil_account(DEPLOYER).address
    await txs.load_nonces([deployer])
    d = _Deployer(txs, deployer)
    deploy_block = int(await rpc(w3, "eth_blockNumber", []), 16) + 1

    # Stage 1: tokens, feeds, libraries, Multicall3, provider, ACL, pool, oracle, data provider.
    erc20, feed_art = load_aave("MintableERC20"), load_own("PriceFeed")
    tokens = {r.symbol: d.create(erc20, [r.name, r.symbol, r.decimals], r.symbol) for r in params.RESERVES}
    feeds = {
        r.symbol: d.create(feed_art, [params.PRICE_DECIMALS, f"{r.symbol} / USD (devnet)", r.price_e8], f"{r.symbol} feed")
        for r in params.RESERVES
    }
    libs = _deploy_libraries(d, (*POOL_LIBRARIES, "ConfiguratorLogic"))
    mc3_deployed = d.txs.deploy(deployer, multicall3_creation_code(), gas=DEPLOY_GAS, label="deploy Multicall3")

    pap = load_aave("PoolAddressesProvider")
    provider = d.create(pap, [params.MARKET_ID, deployer], "PoolAddressesProvider")
    d.call(pap, provider, "setACLAdmin", [deployer])
    acl_art = load_aave("ACLManager")
    acl = d.create(acl_art, [provider], "ACLManager")
    d.call(pap, provider, "setACLManager", [acl])
    for role in ("addPoolAdmin", "addRiskAdmin", "addEmergencyAdmin"):
        d.call(acl_art, acl, role, [deployer])

    pool_art, conf_art = load_aave("Pool"), load_aave("PoolConfigurator")
    pool_impl = d.create(pool_art, [provider], "Pool implementation", link(pool_art, libs))
    d.call(pool_art, pool_impl, "initialize", [provider])
    conf_impl = d.create(conf_art, [], "PoolConfigurator implementation", link(conf_art, libs))
    d.call(conf_art, conf_impl, "initialize", [provider])
    d.call(pap, provider, "setPoolImpl", [pool_impl], gas=DEPLOY_GAS)
    d.call(pap, provider, "setPoolConfiguratorImpl", [conf_impl], gas=DEPLOY_GAS)

    oracle_art = load_aave("AaveOracle")
    assets = [tokens[r.symbol] for r in params.RESERVES]
    sources = [feeds[r.symbol] for r in params.RESERVES]
    oracle = d.create(oracle_art, [provider, assets, sources, ZERO, ZERO, 10**params.PRICE_DECIMALS], "AaveOracle")
    d.call(pap, provider, "setPriceOracle", [oracle])
    data_provider = d.create(load_aave("AaveProtocolDataProvider"), [provider], "AaveProtocolDataProvider")
    d.call(pap, provider, "setPoolDataProvider", [data_provider])

    irs_art = load_aave("DefaultReserveInterestRateStrategy")
    strategies = {r.strategy.name: r.strategy for r in params.RESERVES}
    rate_strategies = {n: d.create(irs_art, [provider, *s.args()], n) for n, s in strategies.items()}
    await txs.mine()

    provider_c = w3.eth.contract(address=provider, abi=pap.abi)
    pool = await provider_c.functions.getPool().call()
    configurator = await provider_c.functions.getPoolConfigurator().call()
    if pool == ZERO or configurator == ZERO:
        raise DevnetError("PoolAddressesProvider did not create the Pool / PoolConfigurator proxies")

    # Stage 2: token implementations, reserves, risk parameters.
    impls = {}
    for name in ("AToken", "StableDebtToken", "VariableDebtToken"):
        art = load_aave(name)
        impls[name] = d.create(art, [pool], f"{name} implementation")
        init = [pool, ZERO, ZERO, ZERO, 0, f"{name}_IMPL", f"{name}_IMPL", b"\x00"]
        d.call(art, impls[name], "initialize", init if name == "AToken" else [pool, *init[2:]])
    treasury = anvil_account(TREASURY).address
    inputs = [
        (
            impls["AToken"], impls["StableDebtToken"], impls["VariableDebtToken"], r.decimals,
            rate_strategies[r.strategy.name], tokens[r.symbol], treasury, ZERO,
            f"Aave Devnet {r.symbol}", f"aDev{r.symbol}",
            f"Aave Devnet Variable Debt {r.symbol}", f"variableDebtDev{r.symbol}",
            f"Aave Devnet Stable Debt {r.symbol}", f"stableDebtDev{r.symbol}", b"\x10",
        )
        for r in params.RESERVES
    ]  # fmt: skip
    d.call(conf_art, configurator, "initReserves", [inputs], gas=INIT_RESERVES_GAS)
    for r in params.RESERVES:
        asset = tokens[r.symbol]
        d.call(conf_art, configurator, "configureReserveAsCollateral",
               [asset, r.ltv_bps, r.liquidation_threshold_bps, r.liquidation_bonus_bps])  # fmt: skip
        d.call(conf_art, configurator, "setReserveBorrowing", [asset, True])
        d.call(conf_art, configurator, "setReserveFlashLoaning", [asset, True])
        d.call(conf_art, configurator, "setReserveFactor", [asset, r.reserve_factor_bps])
        d.call(conf_art, configurator, "setSupplyCap", [asset, r.supply_cap])
        d.call(conf_art, configurator, "setBorrowCap", [asset, r.borrow_cap])
        d.call(conf_art, configurator, "setLiquidationProtocolFee", [asset, r.liquidation_protocol_fee_bps])
    for e in params.EMODES:
        d.call(conf_art, configurator, "setEModeCategory",
               [e.id, e.ltv_bps, e.liquidation_threshold_bps, e.liquidation_bonus_bps, ZERO, e.label])  # fmt: skip
    for r in params.RESERVES:
        if r.emode_category:
            d.call(conf_art, configurator, "setAssetEModeCategory", [tokens[r.symbol], r.emode_category])
    d.call(conf_art, configurator, "updateFlashloanPremiumTotal", [params.FLASHLOAN_PREMIUM_TOTAL_BPS])
    d.call(conf_art, configurator, "updateFlashloanPremiumToProtocol", [params.FLASHLOAN_PREMIUM_PROTOCOL_BPS])
    await txs.mine()

    # Multicall3: copy the runtime code the creation code produced to the canonical address.
    code = await rpc(w3, "eth_getCode", [mc3_deployed, "latest"])
    if not code or code == "0x":
        raise DevnetError("Multicall3 creation code deployed no runtime code")
    await rpc(w3, "anvil_setCode", [MULTICALL3, code])

    dp = w3.eth.contract(address=data_provider, abi=load_aave("AaveProtocolDataProvider").abi)
    a_tokens, stable, variable = {}, {}, {}
    for r in params.RESERVES:
        a, s, v = await dp.functions.getReserveTokensAddresses(tokens[r.symbol]).call()
        if ZERO in (a, s, v):
            raise DevnetError(f"reserve {r.symbol} was not initialised")
        a_tokens[r.symbol], stable[r.symbol], variable[r.symbol] = a, s, v

    return Market(
        pool_addresses_provider=provider,
        pool=pool,
        pool_configurator=configurator,
        acl_manager=acl,
        oracle=oracle,
        data_provider=data_provider,
        multicall3=MULTICALL3,
        tokens=tokens,
        feeds=feeds,
        a_tokens=a_tokens,
        variable_debt_tokens=variable,
        stable_debt_tokens=stable,
        rate_strategies=rate_strategies,
        deploy_block=deploy_block,
    )
