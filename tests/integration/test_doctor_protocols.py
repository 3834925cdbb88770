"""`keeper doctor` on Morpho Blue and Compound V3 markets, run as a person runs it (a
subprocess): it passes on a config with all three protocols, and fails (exit 1) with a line
that names the problem for a market id that does not exist, a Comet address that is a token,
a Morpho address with no code and an oracle that prices at zero.

The ``deployed`` fixture deploys Morpho Blue and the Comet stand-in once for this module
(after the Aave devnet's session set-up, before the per-test snapshot) and reverts the chain
to before them at the end of the module, so other modules never see them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from web3 import AsyncWeb3

from keeper.devnet.comet import CometInfo, deploy_comet
from keeper.devnet.lifecycle import comet_config_toml, morpho_config_toml
from keeper.devnet.morpho import MorphoInfo, deploy_morpho, set_morpho_price
from keeper.devnet.rpc import rpc

N_BORROWERS = 6
SEED = 11
NO_CODE = "0x00000000000000000000000000000000DeaDBeef"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def deployed(devnet, w3: AsyncWeb3) -> AsyncIterator[tuple[MorphoInfo, CometInfo]]:
    before = await rpc(w3, "evm_snapshot", [])
    try:
        minfo = await deploy_morpho(w3, devnet.info, N_BORROWERS, SEED)
        cinfo = await deploy_comet(w3, devnet.info, N_BORROWERS, SEED)
        yield minfo, cinfo
    finally:
        if not await rpc(w3, "evm_revert", [before]):
            raise RuntimeError("could not revert the Morpho/Comet deployment: later modules would see it")


def doctor(devnet, tmp_path: Path, extra: str) -> tuple[int, list[str], list[str]]:
    """Run `keeper doctor` on the devnet's Aave config plus ``extra`` market entries:
    (exit code, ok lines, FAIL lines)."""
    path = tmp_path / "keeper.toml"
    path.write_text(devnet.config_path.read_text() + f'\n[store]\npath = "{tmp_path / "k.sqlite"}"\n'
                    + extra)
    out = subprocess.run([sys.executable, "-m", "keeper", "doctor", "--config", str(path)],
                         capture_output=True, text=True, timeout=120, env=dict(os.environ), check=False)
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stdout.splitlines()
    return (out.returncode, [x for x in lines if x.startswith("ok")],
            [x for x in lines if x.startswith("FAIL")])


def named(lines: list[str], name: str) -> list[str]:
    return [x for x in lines if x.split(None, 1)[1].startswith(name + ":")]


def test_doctor_passes_on_all_three_protocols(devnet, deployed, tmp_path):
    minfo, cinfo = deployed
    code, ok, fails = doctor(devnet, tmp_path, morpho_config_toml(minfo) + comet_config_toml(cinfo))
    assert (code, fails) == (0, []), ok
    assert named(ok, "morpho: morpho") and minfo.morpho in named(ok, "morpho: morpho")[0]
    for mid in minfo.market_ids:
        (line,) = named(ok, f"morpho: market {mid[:10]}")
        assert mid in line and minfo.labels[mid] in line  # e.g. "WETH/USDC"
        for what in ("oracle", "irm", "lltv"):
            assert named(ok, f"morpho: market {mid[:10]} {what}"), what
    (line,) = named(ok, "comet: comet")
    assert cinfo.comet in line and "base USDC" in line and "2 collateral assets" in line
    assert len(named(ok, "comet: asset 0")) == len(named(ok, "comet: asset 1")) == 1
    for symbol in ("USDC", "WETH", "WBTC"):
        (line,) = named(ok, f"comet: price {symbol}")
        assert "USD" in line
    assert any(line.startswith("ok   devnet: pool") for line in ok)  # Aave's checks still run


async def test_doctor_names_each_problem_and_checks_the_rest(devnet, deployed, tmp_path, w3):
    """One run (keeper starts once) with four broken entries beside good ones: a market id that
    does not exist, an oracle at zero, a Morpho address with no code, a Comet that is a token."""
    minfo, cinfo = deployed
    good, zero = minfo.market_ids
    wrong = "0x" + "12" * 32
    await set_morpho_price(w3, minfo, zero, 0)

    def morpho(name: str, address: str, ids: list[str]) -> str:
        ids_toml = ", ".join(f'"{i}"' for i in ids)
        return f'\n[[markets]]\nprotocol = "morpho_blue"\nname = "{name}"\nmorpho = "{address}"\nmarket_ids = [{ids_toml}]\n'

    extra = (morpho("morpho-ids", minfo.morpho, [good, wrong]) + morpho("morpho-zero", minfo.morpho, [zero])
             + morpho("morpho-nocode", NO_CODE, [good])
             + comet_config_toml(cinfo).replace(cinfo.comet, cinfo.base_token))
    code, ok, fails = doctor(devnet, tmp_path, extra)
    assert code == 2  # keeper run would refuse to start: the start-up checks (keeper.preflight) say why
    start_up = [x for x in fails if x.split()[1].startswith("markets[")]
    assert len(start_up) == 3, start_up  # a price at zero is not a reason to refuse to start
    assert any("markets[1].market_ids[1]" in x and "does not exist" in x for x in start_up)
    assert any("markets[3].morpho" in x and "no contract" in x for x in start_up)
    assert any("markets[4].comet" in x and "not a Compound V3 Comet" in x for x in start_up)
    fails = [x for x in fails if x not in start_up]
    assert len(fails) == 4, fails
    (line,) = named(fails, f"morpho-ids: market {wrong[:10]}")
    assert f"market {wrong} does not exist on {minfo.morpho}" in line
    (line,) = named(fails, f"morpho-zero: market {zero[:10]} oracle")
    assert f"oracle {minfo.oracles[zero]} price() is 0" in line
    assert fails.count(f"FAIL morpho-nocode: morpho: no contract at {NO_CODE}") == 1
    (line,) = named(fails, "comet: comet")
    assert f"{cinfo.base_token} does not answer baseToken()" in line
    # the rest is still checked: the good id beside the wrong one, the zero market's IRM and LLTV
    for what in ("", " oracle", " irm", " lltv"):
        assert named(ok, f"morpho-ids: market {good[:10]}{what}"), what
    assert named(ok, f"morpho-zero: market {zero[:10]} irm") and named(ok, f"morpho-zero: market {zero[:10]} lltv")
    assert not named(ok, f"morpho-nocode: market {good[:10]}")  # no contract: nothing more to ask
    assert named(ok, "devnet: reserves")  # Aave's checks run as before
