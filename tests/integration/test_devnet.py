"""The devnet is a real Aave V3 market: these tests read the chain, not the devnet's records."""

from __future__ import annotations

import json
import tomllib

import pytest
from eth_abi import decode
from eth_account import Account
from eth_utils import function_abi_to_4byte_selector
from web3 import AsyncWeb3
from web3.logs import DISCARD

from keeper.devnet import params
from keeper.devnet.api import (
    advance_time,
    apply_price_change,
    borrower_key,
    get_price,
    set_feed_updated_at,
    set_price,
)
from keeper.devnet.artifacts import ROOT, load_aave
from keeper.devnet.rpc import TxQueue, calldata, rpc, wait_receipt
from keeper.devnet.state import DevnetInfo
from keeper.errors import DevnetError
from keeper.units import RAY, UINT256_MAX, WAD
from tests.integration.conftest import N_BORROWERS, Devnet

ABI_DIR = ROOT / "contracts" / "abi"


def _abi(name: str) -> list[dict]:
    return json.loads((ABI_DIR / f"{name}.json").read_text())


def _c(w3: AsyncWeb3, address: str, abi_name: str):  # noqa: ANN202
    return w3.eth.contract(address=address, abi=_abi(abi_name))


async def test_reserves_have_their_decimals_and_risk_parameters(devnet: Devnet, w3: AsyncWeb3):
    info = devnet.info
    pool, dp = _c(w3, info.pool, "Pool"), _c(w3, info.data_provider, "AaveProtocolDataProvider")
    listed = await pool.functions.getReservesList().call()
    assert listed == [info.tokens[r.symbol] for r in params.RESERVES]
    decimals = {
        symbol: await _c(w3, asset, "IERC20Detailed").functions.decimals().call()
        for symbol, asset in info.tokens.items()
    }
    assert decimals == {"WETH": 18, "WBTC": 8, "USDC": 6, "DAI": 18}
    for r in params.RESERVES:
        asset = info.tokens[r.symbol]
        (dec, ltv, lt, bonus, rf, collateral, borrowing, stable, active, frozen) = (
            await dp.functions.getReserveConfigurationData(asset).call()
        )
        assert (dec, ltv, lt, bonus, rf) == (
            r.decimals, r.ltv_bps, r.liquidation_threshold_bps, r.liquidation_bonus_bps,
            r.reserve_factor_bps,
        )  # fmt: skip
        assert (collateral, borrowing, stable, active, frozen) == (True, True, False, True, False)
        assert await dp.functions.getLiquidationProtocolFee(asset).call() == r.liquidation_protocol_fee_bps
        assert await dp.functions.getReserveCaps(asset).call() == [r.borrow_cap, r.supply_cap]
        assert await dp.functions.getReserveEModeCategory(asset).call() == r.emode_category
    emode = await pool.functions.getEModeCategoryData(params.STABLE_EMODE).call()
    assert tuple(emode) == (9300, 9500, 10100, "0x" + "00" * 20, "Stablecoins")
    expected = {"WETH": [8000, 8250, 10500], "WBTC": [7000, 7500, 11000], "USDC": [7700, 8000, 10450]}
    for symbol, ltv_lt_bonus in expected.items():  # spelled out, not read back from params
        assert (await dp.functions.getReserveConfigurationData(info.tokens[symbol]).call())[1:4] == \
            ltv_lt_bonus


async def test_oracle_reads_our_feeds_in_usd(devnet: Devnet, w3: AsyncWeb3):
    info = devnet.info
    oracle = _c(w3, info.oracle, "AaveOracle")
    assert await oracle.functions.BASE_CURRENCY_UNIT().call() == 10**8
    for r in params.RESERVES:
        asset = info.tokens[r.symbol]
        assert await oracle.functions.getSourceOfAsset(asset).call() == info.feeds[r.symbol]
        assert await oracle.functions.getAssetPrice(asset).call() == r.price_e8
    provider = _c(w3, info.pool_addresses_provider, "PoolAddressesProvider")
    assert await provider.functions.getPriceOracle().call() == info.oracle
    assert await provider.functions.getPool().call() == info.pool
    assert await provider.functions.getPoolDataProvider().call() == info.data_provider


async def test_borrowers_have_debt_and_a_spread_of_health_factors(devnet: Devnet, w3: AsyncWeb3):
    info = devnet.info
    pool = _c(w3, info.pool, "Pool")
    assert len(info.borrowers) == N_BORROWERS == len(set(info.borrowers))
    hfs, shapes = [], set()
    for account in info.borrowers:
        _, debt, _, _, _, hf = await pool.functions.getUserAccountData(account).call()
        assert debt > 0, account
        assert hf > WAD, account
        hfs.append(hf)
        bits = (await pool.functions.getUserConfiguration(account).call())[0]
        borrowing = sum(1 for i in range(len(params.RESERVES)) if bits >> (2 * i) & 1)
        collateral = sum(1 for i in range(len(params.RESERVES)) if bits >> (2 * i + 1) & 1)
        shapes.add((collateral, borrowing, await pool.functions.getUserEMode(account).call()))
    assert min(hfs) < 12 * WAD // 10
    assert max(hfs) > 2 * WAD
    assert any(c >= 2 and b >= 2 for c, b, _ in shapes), shapes  # several collaterals and debts
    assert any(e == params.STABLE_EMODE for _, _, e in shapes), shapes
    for lender in info.lenders:  # the accounts without debt
        _, debt, _, _, _, hf = await pool.functions.getUserAccountData(lender).call()
        assert (debt, hf) == (0, UINT256_MAX)


async def test_multicall3_is_at_its_canonical_address(devnet: Devnet, w3: AsyncWeb3):
    info = devnet.info
    code = bytes(await w3.eth.get_code(info.multicall3))
    assert info.multicall3 == "0xcA11bde05977b3631167028862bE2a173976CA11"
    mc_abi = _abi("Multicall3")
    for fn in (f for f in mc_abi if f["type"] == "function"):
        assert b"\x63" + function_abi_to_4byte_selector(fn) in code, fn["name"]  # PUSH4 selector
    oracle_abi, pool_abi = _abi("AaveOracle"), _abi("Pool")
    calls = [
        (info.oracle, False, bytes.fromhex(calldata(oracle_abi, "getAssetPrice", [info.tokens["WBTC"]])[2:])),
        (info.pool, False, bytes.fromhex(calldata(pool_abi, "getReservesList", [])[2:])),
        (info.pool, True, b"\xde\xad\xbe\xef"),  # no such function: fails, allowed
    ]
    results = await w3.eth.contract(address=info.multicall3, abi=mc_abi).functions.aggregate3(calls).call()
    assert results[0][0] and decode(["uint256"], results[0][1])[0] == 60_000 * 10**8
    assert results[1][0] and len(decode(["address[]"], results[1][1])[0]) == len(params.RESERVES)
    assert results[2][0] is False


async def test_price_change_moves_the_oracle_exactly(devnet: Devnet, w3: AsyncWeb3):
    info = devnet.info
    oracle, feed = _c(w3, info.oracle, "AaveOracle"), _c(w3, info.feeds["WETH"], "PriceFeed")
    old = await oracle.functions.getAssetPrice(info.tokens["WETH"]).call()
    round_before = await feed.functions.latestRound().call()
    new = apply_price_change(old, "-30%")
    assert new == old * 7000 // 10000 == 1_400 * 10**8

    change = await set_price(w3, info, "WETH", new)

    assert (change.old_e8, change.new_e8) == (old, new)
    assert await oracle.functions.getAssetPrice(info.tokens["WETH"]).call() == new
    receipt = await w3.eth.get_transaction_receipt(change.tx_hash)
    block = await w3.eth.get_block(receipt["blockNumber"])
    (event,) = feed.events.AnswerUpdated().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["current"] == new
    assert event["args"]["roundId"] == round_before + 1
    assert event["args"]["updatedAt"] == block["timestamp"] == change.timestamp
    (new_round,) = feed.events.NewRound().process_receipt(receipt, errors=DISCARD)
    assert new_round["args"]["roundId"] == round_before + 1
    round_id, answer, started, updated, answered_in = await feed.functions.latestRoundData().call()
    assert (round_id, answer, started, updated, answered_in) == (
        round_before + 1, new, block["timestamp"], block["timestamp"], round_before + 1,
    )  # fmt: skip
    assert (await feed.functions.getRoundData(round_before).call())[1] == old


async def test_price_move_in_the_same_second_accrues_no_interest(devnet: Devnet, w3: AsyncWeb3):
    info = devnet.info
    pool, usdc = _c(w3, info.pool, "Pool"), info.tokens["USDC"]
    latest = await w3.eth.get_block("latest")
    debt_index = await pool.functions.getReserveNormalizedVariableDebt(usdc).call(
        block_identifier=latest["number"]
    )
    change = await set_price(w3, info, "WETH", 1_500 * 10**8, timestamp=latest["timestamp"])
    assert (change.block, change.timestamp) == (latest["number"] + 1, latest["timestamp"])
    after = await pool.functions.getReserveNormalizedVariableDebt(usdc).call(block_identifier=change.block)
    assert after == debt_index


async def test_price_crash_makes_positions_liquidatable(devnet: Devnet, w3: AsyncWeb3):
    info = devnet.info
    pool = _c(w3, info.pool, "Pool")
    for symbol in ("WETH", "WBTC"):
        old = await get_price(w3, info, symbol)
        assert old == params.spec(symbol).price_e8  # earlier tests' price moves were reverted
        await set_price(w3, info, symbol, apply_price_change(old, "-30%"))
    hfs = [(await pool.functions.getUserAccountData(a).call())[5] for a in info.borrowers]
    assert any(hf < WAD for hf in hfs)


async def test_relative_and_absolute_prices_are_exact():
    assert apply_price_change(2_000 * 10**8, "+10%") == 2_200 * 10**8
    assert apply_price_change(2_000 * 10**8, "-2.5%") == 1_950 * 10**8
    assert apply_price_change(3, "-50%") == 1  # floors, like the integer math it is
    assert apply_price_change(1, "1500.25") == 150_025_000_000
    for bad in ("-100%", "abc", "1.123456789", "10%%"):
        with pytest.raises(DevnetError):
            apply_price_change(10**8, bad)


async def test_feed_can_look_stale_and_only_its_owner_sets_it(devnet: Devnet, w3: AsyncWeb3):
    info = devnet.info
    feed = _c(w3, info.feeds["USDC"], "PriceFeed")
    await set_feed_updated_at(w3, info, "USDC", 1_000)
    assert (await feed.functions.latestRoundData().call())[3] == 1_000
    assert await feed.functions.latestTimestamp().call() == 1_000
    with pytest.raises(Exception, match="No data present"):
        await feed.functions.getRoundData(99).call()
    stranger = info.liquidator
    with pytest.raises(Exception):  # noqa: B017 - web3's revert error types vary by node
        await feed.functions.setAnswer(1).call({"from": stranger})
    assert await feed.functions.owner().call() == info.deployer
    assert await feed.functions.description().call() == "USDC / USD (devnet)"
    assert await feed.functions.decimals().call() == 8


async def test_advance_time_accrues_interest(devnet: Devnet, w3: AsyncWeb3):
    info = devnet.info
    pool = _c(w3, info.pool, "Pool")
    usdc = info.tokens["USDC"]
    income_before = await pool.functions.getReserveNormalizedIncome(usdc).call()
    debt_before = await pool.functions.getReserveNormalizedVariableDebt(usdc).call()
    hf_before = (await pool.functions.getUserAccountData(info.borrowers[0]).call())[5]

    await advance_time(w3, 365 * 86_400)

    income_after = await pool.functions.getReserveNormalizedIncome(usdc).call()
    debt_after = await pool.functions.getReserveNormalizedVariableDebt(usdc).call()
    assert income_after > income_before and income_after > RAY
    assert debt_after > debt_before and debt_after > income_after
    assert (await pool.functions.getUserAccountData(info.borrowers[0]).call())[5] < hf_before
    # The stored index moves on the next action on the reserve: here, a lender's supply.
    lender, token = info.lenders[params.RESERVES.index(params.spec("USDC"))], info.tokens["USDC"]
    erc20 = load_aave("MintableERC20").abi
    await rpc(w3, "anvil_impersonateAccount", [lender])
    for to, data in (
        (token, calldata(erc20, "mint", [10**6])),
        (info.pool, calldata(_abi("Pool"), "supply", [token, 10**6, lender, 0])),
    ):
        tx_hash = await rpc(w3, "eth_sendTransaction", [{"from": lender, "to": to, "data": data}])
        assert (await wait_receipt(w3, tx_hash))["status"] == "0x1"
    await rpc(w3, "anvil_stopImpersonatingAccount", [lender])
    reserve = await pool.functions.getReserveData(usdc).call()
    assert reserve[1] > RAY  # liquidityIndex


async def test_failed_setup_transaction_raises_with_its_label(devnet: Devnet, w3: AsyncWeb3):
    info = devnet.info
    nobody = Account.from_key(borrower_key(seed=999, index=0)).address  # no collateral
    await rpc(w3, "anvil_setBalance", [nobody, hex(10**18)])
    await rpc(w3, "anvil_impersonateAccount", [nobody])
    await rpc(w3, "evm_setAutomine", [False])
    txs = TxQueue(w3)
    await txs.load_nonces([nobody])
    data = calldata(_abi("Pool"), "borrow", [info.tokens["USDC"], 10**6, 2, 0, nobody])
    txs.add(nobody, info.pool, data, gas=1_000_000, label="borrow without collateral")
    with pytest.raises(DevnetError, match="borrow without collateral: reverted"):
        await txs.mine()


async def test_state_keys_and_config_are_usable(devnet: Devnet):
    info = devnet.info
    assert DevnetInfo.from_json(json.loads(json.dumps(info.to_json()))) == info
    for i in (0, 1, N_BORROWERS - 1):
        assert Account.from_key(borrower_key(info.seed, i)).address == info.borrowers[i]
    assert Account.from_key(info.dev_keys["liquidator"]).address == info.liquidator
    raw = tomllib.loads(devnet.config_path.read_text())
    assert raw["chain"] == {"rpc_url": devnet.rpc_url, "chain_id": 31337}
    assert raw["markets"] == [{
        "protocol": "aave_v3", "name": "devnet",
        "pool_addresses_provider": info.pool_addresses_provider, "start_block": 0,
    }]  # fmt: skip
    from keeper.config import load_config  # the keeper takes the file as it is

    cfg = load_config(devnet.config_path, env={})
    assert cfg.markets[0].pool_addresses_provider == info.pool_addresses_provider


def test_a_stopped_anvil_leaves_no_states_on_disk():
    """anvil spills states beyond the ones it keeps in memory under $HOME/.foundry/anvil/tmp and
    does not remove them when stopped; start_anvil gives it a HOME of its own, stop_anvil
    removes it (before: about 4 GB left behind per test run)."""
    import os
    import urllib.request

    from keeper.devnet.anvil import _own_home, start_anvil, stop_anvil

    a = start_anvil()
    home = _own_home(a.pid)
    try:
        assert home is not None and os.path.isdir(home)
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "anvil_mine", "params": [hex(700)]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{a.port}", body, {"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=30).read()
        spilled = os.path.join(home, ".foundry", "anvil", "tmp")
        assert os.path.isdir(spilled) and os.listdir(spilled)  # anvil wrote states there, not in ~
    finally:
        assert stop_anvil(a.pid)
    assert not os.path.exists(home)


def test_start_anvil_takes_another_port_when_the_free_one_was_taken(monkeypatch):
    """start_anvil(port=0) probes a free port, which anything may bind before anvil does (a CI
    run failed that way in a proxy of the tests): anvil then exits, and another port is tried."""
    import socket

    from keeper.devnet import anvil as anvil_mod

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))  # bound, not listening: anvil cannot bind it, nothing answers on it
    probes = iter([taken.getsockname()[1]])
    real = anvil_mod.free_port
    monkeypatch.setattr(anvil_mod, "free_port", lambda: next(probes, None) or real())
    try:
        a = anvil_mod.start_anvil()
        try:
            assert a.port != taken.getsockname()[1]
            assert anvil_mod.is_anvil_running(a.pid)
        finally:
            anvil_mod.stop_anvil(a.pid)
    finally:
        taken.close()
    probes = iter([])  # every probe taken: the error names the exit, after PORT_TRIES of them
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        monkeypatch.setattr(anvil_mod, "free_port", lambda: held.getsockname()[1])
        with pytest.raises(DevnetError, match="exited with code"):
            anvil_mod.start_anvil()
