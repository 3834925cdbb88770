"""keeper on a real Aave V3 3.6 market, deployed from npm @aave-dao/aave-v3-origin 3.6.0 sources
(compiled once into build/, cached), on its own anvil for this module (the session devnet is
3.0.2): the version is read from the chain, the off-chain HF equals getUserAccountData to
the wei before and after a 30% WETH crash and after a year, and liquidation quotes for the
three 3.3-rule borrowers execute on chain without a revert, to the wei of the event.
"""

from __future__ import annotations

import pytest

from keeper.chain.rpc import Rpc
from keeper.config import load_config
from keeper.devnet.aave36 import load_aave36
from keeper.devnet.api import advance_time, apply_price_change, get_price, mint, set_price
from keeper.devnet.rpc import calldata, rpc, wait_receipt
from keeper.engine import Engine
from keeper.executors.guard import decode_revert
from keeper.protocols.aave_v3.liquidation36 import (
    MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD,
    MIN_LEFTOVER_BASE,
    best_liquidation36,
    plan_liquidation36,
)
from keeper.protocols.aave_v3.math36 import account_data36
from keeper.protocols.aave_v3 import errors as aave36_errors
from keeper.store import Store
from keeper.units import UINT256_MAX, WAD
from tests.integration.devnet36 import _snapshot36, anvil36, devnet36, engine36, w3_36  # noqa: F401
from tests.integration.test_monitor import assert_equal_to_pool, scan

MAX = 2**256 - 1


async def crash(w3, info, symbol: str = "WETH", step: str = "-30%") -> None:
    await set_price(w3, info, symbol, apply_price_change(await get_price(w3, info, symbol), step))


async def accounts_at(engine, block):
    w = engine.watches[0]
    positions = {p.account: p for p in await engine.full_scan(block)}
    return w.market, {a.account: a for a in await w.adapter.read_accounts(sorted(positions), w.market)}


# ------------------------------------------------------------------ version and health


async def test_version_is_read_from_the_chain(devnet36, engine36, devnet, tmp_path):
    block, _ = await scan(engine36)
    market = engine36.watches[0].market
    assert (market.version, market.revision) == ((3, 6), 10)
    assert all(r.stable_debt_token == "0x" + "00" * 20 for r in market.reserves)
    assert all(r.virtual_underlying > 0 and r.liquidation_grace_until == 0 for r in market.reserves)
    (cat,) = market.emode_categories.values()  # bitmaps: USDC (2) and DAI (3) as collateral
    assert (cat.liquidation_threshold_bps, cat.collateral_bitmap, cat.borrowable_bitmap) == (9500, 0b1100, 0b1100)
    node = Rpc(devnet.rpc_url)  # the session's 3.0.2 devnet keeps the 3.0 math
    store = Store(tmp_path / "old.sqlite")
    cfg = load_config(devnet.config_path)
    cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update={"path": tmp_path / "old.sqlite"})})
    old = Engine(cfg, node, store)
    try:
        await scan(old)
        assert old.watches[0].market.version == (3, 0)
    finally:
        store.close()
        await node.close()


@pytest.mark.parametrize("scenario", ["seeded", "crash", "crash_then_year"])
async def test_hf_equals_get_user_account_data_to_the_wei(devnet36, engine36, w3_36, scenario):
    if scenario != "seeded":
        await crash(w3_36, devnet36.info)
    if scenario == "crash_then_year":
        await advance_time(w3_36, 365 * 86_400)
    block, positions = await scan(engine36)
    assert set(positions) == set(devnet36.info.borrowers)
    await assert_equal_to_pool(engine36, block, positions)
    market, accts = await accounts_at(engine36, block)
    views = await engine36.watches[0].adapter.pool_account_data(sorted(accts), block)
    assert [account_data36(market, accts[a]) for a in sorted(accts)] == views  # all six numbers
    if scenario != "seeded":
        assert any(p.health_factor_wad < WAD for p in positions.values())


async def test_what_if_shock_and_drop_to_liquidation_agree_with_the_pool(devnet36, engine36, w3_36):
    info = devnet36.info
    block, positions = await scan(engine36)
    what_if = {p.account: p for p in await engine36.full_scan(block, {"WETH": -2000})}
    weth = [p for p in positions.values() if p.main_collateral == "WETH" and p.drop_to_liquidation_bps]
    target = min(weth, key=lambda p: p.drop_to_liquidation_bps)
    old = await get_price(w3_36, info, "WETH")
    same_time = int((await w3_36.eth.get_block(block))["timestamp"])  # no interest in between
    snapshot = await rpc(w3_36, "evm_snapshot", [])
    await set_price(w3_36, info, "WETH", old * 8000 // 10_000, timestamp=same_time)
    _, real = await scan(engine36)
    assert {a: p.health_factor_wad for a, p in what_if.items()} == \
        {a: p.health_factor_wad for a, p in real.items()}
    await rpc(w3_36, "evm_revert", [snapshot])
    adapter = engine36.watches[0].adapter
    for bps, below in ((target.drop_to_liquidation_bps, True), (target.drop_to_liquidation_bps - 1, False)):
        snapshot = await rpc(w3_36, "evm_snapshot", [])
        await set_price(w3_36, info, "WETH", old * (10_000 - bps) // 10_000, timestamp=same_time)
        (view,) = await adapter.pool_account_data([target.account], await engine36.rpc.block_number())
        assert (view.health_factor_wad < WAD) is below
        await rpc(w3_36, "evm_revert", [snapshot])


async def test_lens_reader_and_multicall_read_the_same_accounts(devnet36, engine36, w3_36):
    await advance_time(w3_36, 30 * 86_400)
    block, positions = await scan(engine36)
    w = engine36.watches[0]
    assert w.adapter.use_reader and not w.adapter.has_stable
    accounts = sorted(positions) + list(devnet36.info.lenders)
    assert await w.adapter.read_accounts(accounts, w.market) == \
        await w.adapter.read_accounts_multicall(accounts, w.market)


async def test_rule_borrowers_sit_in_their_rules_after_the_crash(devnet36, engine36, w3_36):
    await crash(w3_36, devnet36.info)
    block, positions = await scan(engine36)
    rules = devnet36.info.rule_borrowers
    for addr in rules.values():
        assert 95 * WAD // 100 < positions[addr].health_factor_wad < WAD
    assert positions[rules["small_debt"]].debt_base < MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
    market, accts = await accounts_at(engine36, block)
    usdc, dai, weth = (market.by_symbol(s).asset for s in ("USDC", "DAI", "WETH"))
    # half of the USDC debt would leave < $1,000: MustNotLeaveDust, the full debt is fine
    acct = accts[rules["half_leaves_dust"]]
    full = plan_liquidation36(market, acct, weth, usdc, MAX)
    assert full.close_factor_bps == 10_000
    with pytest.raises(ValueError, match="MustNotLeaveDust"):
        plan_liquidation36(market, acct, weth, usdc, full.debt_to_repay // 2)
    # even type(uint256).max on DAI is cut to 50% of the total debt and leaves DAI dust
    with pytest.raises(ValueError, match="MustNotLeaveDust"):
        plan_liquidation36(market, accts[rules["max_leaves_dust"]], weth, dai, MAX)


# ------------------------------------------------------------------ liquidations on chain


async def _send(w3, sender: str, to: str, data: str, gas: int = 3_000_000) -> dict:
    tx_hash = await rpc(w3, "eth_sendTransaction", [{"from": sender, "to": to, "data": data, "gas": hex(gas)}])
    return await wait_receipt(w3, tx_hash)


async def _fund_liquidator(w3, info) -> dict[str, int]:
    erc20 = [{"type": "function", "name": "approve", "inputs": [{"type": "address"}, {"type": "uint256"}]}]
    wallet = {}
    for symbol, token in info.tokens.items():
        amount = 10**6 * 10**info.decimals[symbol]
        await mint(w3, info, symbol, info.liquidator, amount)
        await _send(w3, info.liquidator, token, calldata(erc20, "approve", [info.pool, MAX]), 100_000)
        wallet[token] = amount
    return wallet


def _liquidation_event(receipt: dict, pool_abi: list) -> tuple[int, int]:
    from eth_utils import event_abi_to_log_topic
    ev = next(e for e in pool_abi if e.get("type") == "event" and e["name"] == "LiquidationCall")
    t0 = "0x" + event_abi_to_log_topic(ev).hex()
    (lg,) = [lg for lg in receipt["logs"] if lg["topics"][0] == t0]
    data = bytes.fromhex(lg["data"][2:])
    return int.from_bytes(data[:32], "big"), int.from_bytes(data[32:64], "big")


@pytest.mark.parametrize("rule", ["small_debt", "half_leaves_dust", "max_leaves_dust"])
async def test_rule_borrower_quote_executes_to_the_wei(devnet36, engine36, w3_36, rule):
    info = devnet36.info
    wallet = await _fund_liquidator(w3_36, info)
    await crash(w3_36, info)
    block, _ = await scan(engine36)
    market, accts = await accounts_at(engine36, block)
    user = info.rule_borrowers[rule]
    quote = best_liquidation36(market, accts[user], 0, 0, wallet, info.liquidator)
    assert quote is not None and quote.profit_base() > 0
    pool_abi = load_aave36("PoolInstance").abi
    ldp_abi = load_aave36("LiquidationDataProvider").abi
    ldp = w3_36.eth.contract(address=info.liquidation_data_provider, abi=ldp_abi)
    li = await ldp.functions.getLiquidationInfo(user, quote.collateral_asset, quote.debt_asset).call(
        block_identifier=block)
    assert quote.debt_to_repay <= li[4]  # within maxDebtToLiquidate of the Pool's own helper
    # mine in a block with the same timestamp: no interest in between, so the event is the quote
    await rpc(w3_36, "evm_setNextBlockTimestamp", [market.timestamp])
    data = calldata(pool_abi, "liquidationCall",
                    [quote.collateral_asset, quote.debt_asset, user, quote.debt_to_cover, False])
    receipt = await _send(w3_36, info.liquidator, info.pool, data)
    assert int(receipt["status"], 16) == 1
    assert _liquidation_event(receipt, pool_abi) == (quote.debt_to_repay, quote.collateral_to_receive)


async def test_dust_revert_is_a_decoded_custom_error(devnet36, engine36, w3_36):
    info = devnet36.info
    await _fund_liquidator(w3_36, info)
    await crash(w3_36, info)
    user = info.rule_borrowers["max_leaves_dust"]
    weth, dai = info.tokens["WETH"], info.tokens["DAI"]
    data = calldata(load_aave36("PoolInstance").abi, "liquidationCall", [weth, dai, user, MAX, False])
    with pytest.raises(Exception) as e:  # web3's ContractCustomError, with the revert data
        await w3_36.eth.call({"from": info.liquidator, "to": info.pool, "data": data})
    assert decode_revert(bytes.fromhex(str(e.value.data).removeprefix("0x"))) == \
        "Aave error MustNotLeaveDust()"


async def test_grace_period_is_skipped_until_it_ends(devnet36, engine36, w3_36):
    info = devnet36.info
    wallet = await _fund_liquidator(w3_36, info)
    await crash(w3_36, info)
    conf = load_aave36("PoolConfiguratorInstance").abi
    weth = info.tokens["WETH"]
    await _send(w3_36, info.deployer, info.pool_configurator, calldata(conf, "setReservePause", [weth, True]))
    await _send(w3_36, info.deployer, info.pool_configurator,
                calldata(conf, "setReservePause", [weth, False, 3_600]))  # unpaused, 1 h of grace
    user = info.rule_borrowers["small_debt"]  # WETH is its only collateral
    block, _ = await scan(engine36)
    market, accts = await accounts_at(engine36, block)
    assert market.by_asset(weth).liquidation_grace_until > market.timestamp
    assert best_liquidation36(market, accts[user], 0, 0, wallet, info.liquidator) is None
    data = calldata(load_aave36("PoolInstance").abi, "liquidationCall",
                    [weth, info.tokens["USDC"], user, MAX, False])
    with pytest.raises(Exception) as e:
        await w3_36.eth.call({"from": info.liquidator, "to": info.pool, "data": data})
    assert aave36_errors.decode(bytes.fromhex(str(e.value.data).removeprefix("0x"))) == \
        "LiquidationGraceSentinelCheckFailed()"
    await advance_time(w3_36, 3_601)
    block, _ = await scan(engine36)
    market, accts = await accounts_at(engine36, block)
    quote = best_liquidation36(market, accts[user], 0, 0, wallet, info.liquidator)
    assert quote is not None
    await rpc(w3_36, "evm_setNextBlockTimestamp", [market.timestamp])
    receipt = await _send(w3_36, info.liquidator, info.pool, calldata(
        load_aave36("PoolInstance").abi, "liquidationCall",
        [quote.collateral_asset, quote.debt_asset, user, quote.debt_to_cover, False]))
    assert int(receipt["status"], 16) == 1


def test_errors_list_matches_the_compiled_errors_library():
    abi = load_aave36("Errors").abi
    compiled = {e["name"] + "(" + ",".join(i["type"] for i in e["inputs"]) + ")"
                for e in abi if e["type"] == "error"}
    assert set(aave36_errors.SIGNATURES) == compiled


async def test_taking_all_collateral_leaves_a_deficit(devnet36, engine36, w3_36):
    info = devnet36.info
    wallet = await _fund_liquidator(w3_36, info)
    await crash(w3_36, info, "WETH", "-60%")
    block, positions = await scan(engine36)
    market, accts = await accounts_at(engine36, block)
    deep = [a for a, p in positions.items() if p.health_factor_wad is not None
            and p.health_factor_wad * 10_500 < 10_000 * WAD]  # the bonus cannot be covered
    assert deep
    quotes = {a: best_liquidation36(market, accts[a], 0, -UINT256_MAX, wallet, info.liquidator)
              for a in deep}
    user, quote = next((a, q) for a, q in quotes.items() if q is not None and q.leaves_deficit)
    await rpc(w3_36, "evm_setNextBlockTimestamp", [market.timestamp])
    pool_abi = load_aave36("PoolInstance").abi
    receipt = await _send(w3_36, info.liquidator, info.pool, calldata(pool_abi, "liquidationCall",
                          [quote.collateral_asset, quote.debt_asset, user, quote.debt_to_cover, False]))
    assert int(receipt["status"], 16) == 1
    assert _liquidation_event(receipt, pool_abi) == (quote.debt_to_repay, quote.collateral_to_receive)
    pool = w3_36.eth.contract(address=info.pool, abi=pool_abi)
    after = await pool.functions.getUserAccountData(user).call()
    assert after[1] == 0  # no debt left: the rest became the reserves' deficit
    assert await pool.functions.getReserveDeficit(quote.debt_asset).call() > 0
    assert MIN_LEFTOVER_BASE == 1_000 * 10**8


@pytest.mark.parametrize("args,version", [((), "3.6"), (("--aave", "3.0.2"), "3.0.2")])
def test_devnet_up_is_3_6_by_default_and_scan_check_agrees_with_the_pool(tmp_path, args, version):
    import json
    import os
    import subprocess
    import sys

    state = tmp_path / "devnet"

    def keeper(*a: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "keeper", *a], capture_output=True, text=True,
                              timeout=300, env=dict(os.environ))

    up = keeper("devnet", "up", "--port", "0", "--state-dir", str(state), "-n", "4", *args)
    try:
        assert up.returncode == 0, up.stderr
        assert json.loads((state / "state.json").read_text())["aave_version"] == version
        out = keeper("scan", "--config", str(state / "keeper.toml"), "--json", "--check")
        assert out.returncode == 0, out.stderr
        assert "0 mismatches" in out.stdout + out.stderr
        doctor = keeper("doctor", "--config", str(state / "keeper.toml"))
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert f"Aave {'3.6' if version == '3.6' else '3.0.x'} math and rules" in doctor.stdout
    finally:
        assert keeper("devnet", "down", "--state-dir", str(state)).returncode == 0
