"""``keeper protect setup`` and ``keeper protect status`` on the devnet, run as the borrower
protecting itself (KEEPER_PRIVATE_KEY is the borrower's key): the first setup deploys the
contract and sends the aToken allowance; the second sends nothing; status shows the
delegation and the WETH price at which the rule fires, which the Pool agrees with."""

from __future__ import annotations

from tests.integration.own_anvil import anvil, devnet, w3  # noqa: F401  (own anvil: many blocks)

import re

from keeper.chain.rpc import Rpc
from keeper.devnet.api import borrower_key, get_price, set_price
from keeper.devnet.rpc import rpc
from keeper.devnet.uniswap import deploy_uniswap, dex_config_toml
from keeper.protocols.aave_v3 import encode as enc
from keeper.units import UINT256_MAX, WAD
from tests.integration.test_cli import keeper
from tests.integration.test_deleverage import riskiest_weth_usdc_borrower, rule
from tests.integration.test_keeper_actions import config, pool_hf


async def nonce(w3, who: str) -> int:
    return int(await rpc(w3, "eth_getTransactionCount", [who, "latest"]), 16)


async def test_setup_deploys_delegates_once_and_status_shows_the_firing_price(devnet, w3, tmp_path):
    info = devnet.info
    uinfo = await deploy_uniswap(w3, info)
    node = Rpc(devnet.rpc_url, timeout_s=60.0)
    try:
        borrower = await riskiest_weth_usdc_borrower(devnet, node, tmp_path)
    finally:
        await node.close()
    await rpc(w3, "anvil_setBalance", [borrower, hex(10**18)])
    env = {"KEEPER_PRIVATE_KEY": borrower_key(info.seed, info.borrowers.index(borrower))}
    no_contract = rule(borrower, "X", 100).replace('contract = "X"\n', "")
    path = config(devnet, tmp_path, dex_config_toml(uinfo, None) + no_contract)

    first = keeper("protect", "setup", "--config", str(path), env=env)
    assert first.returncode == 0, first.stderr + first.stdout
    contract = re.search(r"deployed KeeperProtection at (0x[0-9a-fA-F]{40})", first.stdout).group(1)
    assert "needed" in first.stdout and "sent" in first.stdout and "may withdraw WETH" in first.stdout
    allowance = await rpc(w3, "eth_call", [{"to": info.a_tokens["WETH"],
                                            "data": "0x" + enc.allowance(borrower, contract).hex()}, "latest"])
    assert int(allowance, 16) == UINT256_MAX

    path.write_text(path.read_text().replace("max_slippage_bps", f'contract = "{contract}"\nmax_slippage_bps'))
    n0 = await nonce(w3, borrower)
    again = keeper("protect", "setup", "--config", str(path), env=env)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "done" in again.stdout and "needed" not in again.stdout and "deployed" not in again.stdout
    assert await nonce(w3, borrower) == n0  # idempotent: nothing sent

    st = keeper("protect", "status", "--config", str(path), env=env)
    assert st.returncode == 0, st.stderr + st.stdout
    assert contract in st.stdout and "MISSING" not in st.stdout
    bps = int(round(float(re.search(r"a ([0-9.]+)% fall", st.stdout).group(1)) * 100))
    assert 0 < bps < 10_000
    price = await get_price(w3, info, "WETH")
    trigger = 115 * WAD // 100
    await set_price(w3, info, "WETH", price * (10_000 - bps + 1) // 10_000)
    assert await pool_hf(w3, info.pool, borrower) >= trigger  # one bp less: not yet
    await set_price(w3, info, "WETH", price * (10_000 - bps) // 10_000)
    assert await pool_hf(w3, info.pool, borrower) < trigger  # the printed fall: it fires

    # a stop-loss and a boost are shown with the rule (the boost's credit delegation is missing)
    path.write_text(path.read_text().replace("max_slippage_bps", 'close_below_price = { asset = "WETH", '
                                             'usd = "1234.5" }\nboost_above_hf = "1.9"\nmax_slippage_bps'))
    st = keeper("protect", "status", "--config", str(path), env=env)
    assert st.returncode == 0, st.stderr + st.stdout
    assert "stop-loss: repays all the debt when WETH <= $1,234.50" in st.stdout, st.stdout
    assert "boost: above health factor 1.9" in st.stdout and "(due now)" not in st.stdout, st.stdout
    assert "MISSING" in st.stdout  # approveDelegation for the boost, not yet given
