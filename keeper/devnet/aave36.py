"""Deploy a real Aave V3 3.6 market (npm @aave-dao/aave-v3-origin 3.6.0, compiled from its
sources) on a fresh anvil, beside what ``deploy.py`` does for 3.0.2.

Bytecode: ``keeper/devnet/compile_aave36.js`` compiles the package's sources with npm solc
0.8.27 and the package's foundry settings (optimizer 200 runs, shanghai, no metadata hash)
into ``build/aave36.json`` on first use (~25 s, ~300 MB), cached by a hash of its inputs.

Order as the package's ``src/deployments/`` procedures run it (AaveV3SetupProcedure,
AaveV3PoolProcedure, AaveV3TokensProcedure, AaveV3HelpersProcedure...): PoolAddressesProvider,
DefaultReserveInterestRateStrategyV2 (one strategy for every reserve, parameters per reserve),
AaveOracle over keeper's PriceFeed contracts, the logic libraries, PoolInstance /
PoolConfiguratorInstance implementations, ``setPoolImpl`` / ``setPoolConfiguratorImpl`` (the
provider deploys the proxies), ACLManager with the admin roles, ``updateFlashloanPremium``,
AaveProtocolDataProvider; then ATokenInstance / VariableDebtTokenInstance implementations (no
rewards controller), ``initReserves`` (3.6 input: no stable debt token, rate data per reserve),
risk parameters, e-mode categories (3.6: no price source; per-asset collateral / borrowable
bitmaps) and a LiquidationDataProvider. Same reserves, caps, feeds and e-mode as the 3.0.2
devnet (``params``). Each stage is one block (automine off).

API::

    market, extra = await deploy_market36(w3, txs)   # -> (deploy.Market, Extra36)
    load_aave36("PoolInstance")                      # Artifact (ABI + bytecode + links)
    plan_rule_borrowers(accounts)                    # the three Aave 3.3-rule borrowers
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_abi import encode
from web3 import AsyncWeb3

from keeper.devnet import params
from keeper.devnet.accounts import DEPLOYER, TREASURY, DevAccount, anvil_account
from keeper.devnet.artifacts import ROOT, Artifact, link, load_aave, load_own, multicall3_creation_code
from keeper.devnet.deploy import CALL_GAS, DEPLOY_GAS, INIT_RESERVES_GAS, MULTICALL3, ZERO, Market
from keeper.devnet.rpc import TxQueue, constructor_args, rpc
from keeper.devnet.seed import BorrowerPlan
from keeper.errors import DevnetError

COMPILE_AAVE36_JS = Path(__file__).with_name("compile_aave36.js")
AAVE36_BUILD = ROOT / "build" / "aave36.json"
VERSION = "3.6"
POOL_LIBRARIES = ("BorrowLogic", "FlashLoanLogic", "LiquidationLogic", "PoolLogic", "SupplyLogic")
RATE_STRATEGY = "DefaultReserveInterestRateStrategyV2"


# ---------------------------------------------------------------- bytecode


def compile_aave36(timeout_s: float = 600.0) -> Path:
    """Run compile_aave36.js (a no-op when build/aave36.json matches its inputs)."""
    try:
        proc = subprocess.run(["node", str(COMPILE_AAVE36_JS), str(AAVE36_BUILD)], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except FileNotFoundError as e:
        raise DevnetError("node is not installed (needed to compile Aave V3 3.6)") from e
    except subprocess.TimeoutExpired as e:
        raise DevnetError(f"compiling Aave V3 3.6 took longer than {timeout_s:.0f} s") from e
    if proc.returncode != 0:
        raise DevnetError(f"compiling Aave V3 3.6 failed:\n{proc.stderr.strip()}")
    return AAVE36_BUILD


@cache
def _build() -> dict[str, Any]:
    compile_aave36()
    return json.loads(AAVE36_BUILD.read_text())["contracts"]


def load_aave36(name: str) -> Artifact:
    """A contract of the 3.6 build, e.g. ``load_aave36("PoolInstance")``; "Errors" is ABI only."""
    contracts = _build()
    if name not in contracts:
        raise DevnetError(f"contract {name!r} not in {AAVE36_BUILD} (have {sorted(contracts)})")
    c = contracts[name]
    return Artifact(name, c["abi"], c["bytecode"], c.get("linkReferences") or {}, c["source"],
                    c.get("deployedBytecode", ""))


def rate_data(s: params.RateStrategy) -> bytes:
    """abi.encode(IDefaultInterestRateStrategyV2.InterestRateData): the strategy in bps."""
    bps = [v * 10_000 // params.RAY for v in (s.optimal_usage_ratio, s.base_variable_borrow_rate,
                                              s.variable_rate_slope1, s.variable_rate_slope2)]
    return encode(["(uint16,uint32,uint32,uint32)"], [tuple(bps)])


# ---------------------------------------------------------------- deployment


@dataclass(frozen=True, slots=True)
class Extra36:
    liquidation_data_provider: str
    rate_strategy: str


class _Deployer:
    def __init__(self, txs: TxQueue, sender: str):
        self.txs, self.sender = txs, sender

    def create(self, art: Artifact, args: list, label: str, code: str | None = None) -> str:
        creation = (code or art.bytecode) + constructor_args(art.abi, args)
        return self.txs.deploy(self.sender, creation, gas=DEPLOY_GAS, label=f"deploy {label} (3.6)")

    def call(self, art: Artifact, to: str, fn: str, *args: object, gas: int = CALL_GAS) -> None:
        self.txs.call(self.sender, to, art.abi, fn, args, gas=gas, label=f"{art.name}.{fn}")


def _libraries(d: _Deployer) -> dict[str, str]:
    done: dict[str, str] = {}
    todo = [*POOL_LIBRARIES, "ConfiguratorLogic"]
    while todo:
        ready = [n for n in todo if load_aave36(n).libraries() <= done.keys()]
        if not ready:
            raise DevnetError(f"3.6 libraries link each other in a cycle or unknown ones: {todo}")
        for name in ready:
            art = load_aave36(name)
            done[name] = d.create(art, [], name, link(art, done))
            todo.remove(name)
    return done


def _queue_core(d: _Deployer) -> dict[str, Any]:
    me = d.sender
    erc20, feed = load_aave("MintableERC20"), load_own("PriceFeed")
    out: dict[str, Any] = {
        "tokens": {r.symbol: d.create(erc20, [r.name, r.symbol, r.decimals], r.symbol)
                   for r in params.RESERVES},
        "feeds": {r.symbol: d.create(feed, [params.PRICE_DECIMALS, f"{r.symbol} / USD (devnet)",
                                            r.price_e8], f"{r.symbol} feed")
                  for r in params.RESERVES},
    }
    out["multicall3_deployed"] = d.txs.deploy(me, multicall3_creation_code(), gas=DEPLOY_GAS,
                                              label="deploy Multicall3")
    pap = load_aave36("PoolAddressesProvider")
    provider = out["provider"] = d.create(pap, [params.MARKET_ID, me], "PoolAddressesProvider")
    irs = out["irs"] = d.create(load_aave36(RATE_STRATEGY), [provider], RATE_STRATEGY)
    assets = [out["tokens"][r.symbol] for r in params.RESERVES]
    sources = [out["feeds"][r.symbol] for r in params.RESERVES]
    oracle = out["oracle"] = d.create(load_aave36("AaveOracle"), [
        provider, assets, sources, ZERO, ZERO, 10**params.PRICE_DECIMALS], "AaveOracle")
    libs = _libraries(d)
    pool_art, conf_art = load_aave36("PoolInstance"), load_aave36("PoolConfiguratorInstance")
    pool_impl = d.create(pool_art, [provider, irs], "PoolInstance", link(pool_art, libs))
    conf_impl = d.create(conf_art, [], "PoolConfiguratorInstance", link(conf_art, libs))
    d.call(pap, provider, "setPriceOracle", oracle)
    d.call(pap, provider, "setPoolImpl", pool_impl, gas=DEPLOY_GAS)  # deploys the Pool proxy
    d.call(pap, provider, "setPoolConfiguratorImpl", conf_impl, gas=DEPLOY_GAS)
    d.call(pap, provider, "setACLAdmin", me)
    acl_art = load_aave36("ACLManager")
    acl = out["acl"] = d.create(acl_art, [provider], "ACLManager")
    d.call(pap, provider, "setACLManager", acl)
    for role in ("addPoolAdmin", "addRiskAdmin", "addEmergencyAdmin"):
        d.call(acl_art, acl, role, me)
    return out


def _queue_after_proxies(d: _Deployer, pool: str, configurator: str, core: dict[str, Any]) -> None:
    """Stage 2: data providers, token implementations, initReserves, risk parameters, e-mode."""
    pap, conf = load_aave36("PoolAddressesProvider"), load_aave36("PoolConfiguratorInstance")
    provider = core["provider"]
    dp = core["data_provider"] = d.create(load_aave36("AaveProtocolDataProvider"), [provider],
                                          "AaveProtocolDataProvider")
    d.call(pap, provider, "setPoolDataProvider", dp)
    core["ldp"] = d.create(load_aave36("LiquidationDataProvider"), [pool, provider],
                           "LiquidationDataProvider")
    d.call(conf, configurator, "updateFlashloanPremium", params.FLASHLOAN_PREMIUM_TOTAL_BPS)
    treasury = anvil_account(TREASURY).address
    a_impl = d.create(load_aave36("ATokenInstance"), [pool, ZERO, treasury], "ATokenInstance")
    v_impl = d.create(load_aave36("VariableDebtTokenInstance"), [pool, ZERO],
                      "VariableDebtTokenInstance")
    tokens = core["tokens"]
    inputs = [(a_impl, v_impl, tokens[r.symbol], f"Aave Devnet {r.symbol}", f"aDev{r.symbol}",
               f"Aave Devnet Variable Debt {r.symbol}", f"variableDebtDev{r.symbol}", b"\x10",
               rate_data(r.strategy)) for r in params.RESERVES]
    d.call(conf, configurator, "initReserves", inputs, gas=INIT_RESERVES_GAS)
    for r in params.RESERVES:
        asset = tokens[r.symbol]
        d.call(conf, configurator, "configureReserveAsCollateral",
               asset, r.ltv_bps, r.liquidation_threshold_bps, r.liquidation_bonus_bps)
        d.call(conf, configurator, "setReserveBorrowing", asset, True)
        d.call(conf, configurator, "setReserveFlashLoaning", asset, True)
        d.call(conf, configurator, "setReserveFactor", asset, r.reserve_factor_bps)
        d.call(conf, configurator, "setSupplyCap", asset, r.supply_cap)
        d.call(conf, configurator, "setBorrowCap", asset, r.borrow_cap)
        d.call(conf, configurator, "setLiquidationProtocolFee", asset, r.liquidation_protocol_fee_bps)
    for e in params.EMODES:
        d.call(conf, configurator, "setEModeCategory", e.id, e.ltv_bps,
               e.liquidation_threshold_bps, e.liquidation_bonus_bps, e.label)
        for r in params.RESERVES:
            if r.emode_category == e.id:  # 3.6: membership is per-asset bits, both ways
                d.call(conf, configurator, "setAssetCollateralInEMode", tokens[r.symbol], e.id, True)
                d.call(conf, configurator, "setAssetBorrowableInEMode", tokens[r.symbol], e.id, True)


async def deploy_market36(w3: AsyncWeb3, txs: TxQueue) -> tuple[Market, Extra36]:
    """Deploy and configure the 3.6 market; automine must be off (``mine`` is called per stage)."""
    deployer = anvil_account(DEPLOYER).address
    await txs.load_nonces([deployer])
    d = _Deployer(txs, deployer)
    deploy_block = int(await rpc(w3, "eth_blockNumber", []), 16) + 1
    core = _queue_core(d)
    await txs.mine()
    provider = w3.eth.contract(address=core["provider"], abi=load_aave36("PoolAddressesProvider").abi)
    pool = await provider.functions.getPool().call()
    configurator = await provider.functions.getPoolConfigurator().call()
    if ZERO in (pool, configurator):
        raise DevnetError("3.6 PoolAddressesProvider did not create the Pool / Configurator proxies")
    _queue_after_proxies(d, pool, configurator, core)
    await txs.mine()

    code = await rpc(w3, "eth_getCode", [core["multicall3_deployed"], "latest"])
    if not code or code == "0x":
        raise DevnetError("Multicall3 creation code deployed no runtime code")
    await rpc(w3, "anvil_setCode", [MULTICALL3, code])

    pool_c = w3.eth.contract(address=pool, abi=load_aave36("PoolInstance").abi)
    a_tokens, variable = {}, {}
    for symbol, asset in core["tokens"].items():
        a_tokens[symbol] = await pool_c.functions.getReserveAToken(asset).call()
        variable[symbol] = await pool_c.functions.getReserveVariableDebtToken(asset).call()
        if ZERO in (a_tokens[symbol], variable[symbol]):
            raise DevnetError(f"3.6 reserve {symbol} was not initialised")
    market = Market(
        pool_addresses_provider=core["provider"], pool=pool, pool_configurator=configurator,
        acl_manager=core["acl"], oracle=core["oracle"], data_provider=core["data_provider"],
        multicall3=MULTICALL3, tokens=core["tokens"], feeds=core["feeds"], a_tokens=a_tokens,
        variable_debt_tokens=variable, stable_debt_tokens={s: ZERO for s in core["tokens"]},
        rate_strategies={RATE_STRATEGY: core["irs"]}, deploy_block=deploy_block)
    return market, Extra36(core["ldp"], core["irs"])


# ---------------------------------------------------------------- the 3.3-rule borrowers

CRASH_BPS = 3_000  # the rule borrowers sit in their rule after WETH falls 30%
RULE_HF_BPS = 9_700  # HF after that crash: in (0.95, 1)
# label -> debts in whole USD (WETH collateral sized for RULE_HF_BPS after the crash):
RULES: dict[str, tuple[tuple[str, int], ...]] = {
    # total debt < $2,000: 100% close factor although HF > 0.95
    "small_debt": (("USDC", 1_500),),
    # USDC debt of $1,500: half of it would leave $750 < $1,000 (MustNotLeaveDust)
    "half_leaves_dust": (("USDC", 1_500), ("DAI", 2_600)),
    # DAI: even type(uint256).max is capped at 50% of the total ($2,750) and leaves $250 DAI
    "max_leaves_dust": (("DAI", 3_000), ("USDC", 2_500)),
}


def plan_rule_borrowers(accounts: list[DevAccount], first_index: int) -> list[BorrowerPlan]:
    """One BorrowerPlan per RULES entry (WETH collateral, stablecoin debts), pure."""
    weth = params.spec("WETH")
    post_crash_e8 = weth.price_e8 * (10_000 - CRASH_BPS) // 10_000
    plans = []
    for k, (label, debts) in enumerate(RULES.items()):
        debt_e8 = sum(usd for _, usd in debts) * 10**8
        # collateral * price_after * LT = HF_after * debt
        coll_units = debt_e8 * RULE_HF_BPS * 10**weth.decimals // (post_crash_e8 * weth.liquidation_threshold_bps)
        pre_hf = coll_units * weth.price_e8 // 10**weth.decimals * weth.liquidation_threshold_bps // debt_e8
        plans.append(BorrowerPlan(
            index=first_index + k, account=accounts[k], emode=0,
            collateral=(("WETH", coll_units),),
            debt=tuple((s, usd * 10**params.spec(s).decimals) for s, usd in debts),
            target_hf_bps=pre_hf))
    return plans
