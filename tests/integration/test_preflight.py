"""Start-up validation against the chain (keeper.preflight), as a person runs `keeper run`:
a wrong chain id, a protect action on a token the market lacks, a provider with no code and
contracts of the wrong kind each stop keeper with exit 2 and a line naming the config key,
in dry_run and in live alike, and the keeper's account has sent nothing (nonce 0)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account

from keeper.chain.rpc import Rpc

KEEPER = [sys.executable, "-m", "keeper"]
NO_CODE = "0x00000000000000000000000000000000DeaDBeef"
KEY = Account.create("keeper preflight test").key.hex()
ADDRESS = Account.from_key(KEY).address


def run(devnet, tmp_path: Path, mode: str, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / f"{mode}.toml"
    path.write_text(f'mode = "{mode}"\n' + text + f'\n[store]\npath = "{tmp_path / (mode + ".sqlite")}"\n')
    env = {**os.environ, "KEEPER_PRIVATE_KEY": KEY}
    env.pop("KEEPER_RPC_URL", None)
    return subprocess.run([*KEEPER, "run", "--config", str(path)], capture_output=True, text=True,
                          timeout=120, env=env)


def nonce(devnet) -> int:
    async def ask() -> int:
        rpc = Rpc(devnet.rpc_url)
        try:
            return int(await rpc.request("eth_getTransactionCount", [ADDRESS, "latest"]), 16)
        finally:
            await rpc.close()
    return asyncio.run(ask())


def base(devnet) -> str:
    return devnet.config_path.read_text() + "\n[liquidator]\nenabled = true\n"


def protect(action: str) -> str:
    return (f'\n[[protect]]\naccount = "{ADDRESS}"\ntrigger_hf = "1.2"\ntarget_hf = "1.5"\n'
            f'actions = ["{action}"]\n')


def morpho(address: str) -> str:
    return (f'\n[[markets]]\nprotocol = "morpho_blue"\nname = "m"\nmorpho = "{address}"\n'
            f'market_ids = ["0x{"12" * 32}"]\n')


CASES = {
    "chain_id": (lambda d: base(d).replace("chain_id = 31337", "chain_id = 1"),
                 "chain.chain_id", "is on chain 31337, config says 1"),
    "repay_xyz": (lambda d: base(d) + protect("repay:XYZ"),
                  "protect[0].actions[0]", "has no token XYZ"),
    "no_code_provider": (lambda d: base(d).replace(d.info.pool_addresses_provider, NO_CODE),
                         "markets[0].pool_addresses_provider", f"no contract at {NO_CODE}"),
    "token_as_provider": (lambda d: base(d).replace(d.info.pool_addresses_provider, d.info.tokens["USDC"]),
                          "markets[0].pool_addresses_provider", "not an Aave V3 PoolAddressesProvider"),
    "pool_as_morpho": (lambda d: base(d) + morpho(d.info.pool), "markets[1].morpho", "not Morpho Blue"),
}


@pytest.mark.parametrize("mode", ["dry_run", "live"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_run_refuses_to_start_naming_the_key(devnet, tmp_path, case, mode):
    text, key, words = CASES[case]
    out = run(devnet, tmp_path, mode, text(devnet))
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    lines = [x for x in out.stderr.splitlines() if key in x]
    assert lines and words in lines[0], out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert '"keeper.started"' not in out.stdout
    assert nonce(devnet) == 0


def test_several_problems_one_line_each(devnet, tmp_path):
    text = (base(devnet).replace(devnet.info.pool_addresses_provider, NO_CODE)
            + morpho(devnet.info.pool) + protect("supply:WETH"))
    out = run(devnet, tmp_path, "live", text)
    assert out.returncode == 2
    assert "markets[0].pool_addresses_provider" in out.stderr and "markets[1].morpho" in out.stderr
    assert "protect[0]" not in out.stderr  # its markets failed their own checks: no second guess


def test_unreachable_node_exits_2_in_both_modes(devnet, tmp_path):
    dead = "http://127.0.0.1:9/v2/SeCrEtKeY0123456789abcdef"
    for mode in ("dry_run", "live"):
        text = base(devnet).replace(devnet.rpc_url, dead)
        out = run(devnet, tmp_path, mode, text)
        assert out.returncode == 2, out.stderr
        assert "chain.rpc_urls[0]" in out.stderr and "does not answer" in out.stderr
        assert "SeCrEtKeY" not in out.stderr + out.stdout


def test_doctor_shows_the_same_problems_and_exits_2(devnet, tmp_path):
    path = tmp_path / "d.toml"
    path.write_text(base(devnet) + protect("repay:XYZ"))
    env = {**os.environ, "KEEPER_PRIVATE_KEY": KEY}
    out = subprocess.run([*KEEPER, "doctor", "--config", str(path)], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 2, out.stdout + out.stderr
    fails = [x for x in out.stdout.splitlines() if x.startswith("FAIL")]
    assert any("protect[0].actions[0]" in x and "XYZ" in x for x in fails), out.stdout


def test_deleverage_actions_are_checked_token_by_token(devnet, tmp_path):
    path = tmp_path / "d.toml"
    dex = "".join(f'{k} = "{NO_CODE}"\n' for k in ("uniswap_v3_factory", "uniswap_v3_router", "uniswap_v3_quoter"))
    path.write_text(base(devnet) + "\n[dex]\n" + dex
                    + protect("deleverage:WETH->USDC").replace('USDC"]', 'USDC", "deleverage:WETH->XYZ"]'))
    out = subprocess.run([*KEEPER, "doctor", "--config", str(path)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "KEEPER_PRIVATE_KEY": KEY})
    fails = [x for x in out.stdout.splitlines() if x.startswith("FAIL") and "protect[0]" in x]
    assert len(fails) == 1 and "actions[1]" in fails[0] and "no token XYZ" in fails[0], out.stdout
