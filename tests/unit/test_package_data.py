"""keeper.package_data: the shipped contracts are read without Node; a checkout whose
contracts/src changed is noticed; a missing build says what it looked at."""

from __future__ import annotations

import pytest

from keeper import package_data as pd
from keeper.errors import DevnetError


def test_the_package_ships_the_lens_and_the_stand_ins():
    data = pd.shipped_contracts()
    assert data is not None, "keeper/_artifacts/contracts.json missing: run `make install`"
    for name in ("AaveAccountsReader", "PriceFeed", "CometStandIn"):
        c = data["contracts"][name]
        assert c["deployedBytecode"].startswith("0x6") and len(c["deployedBytecode"]) > 100
    assert pd.stale_reason(data) is None  # built from the contracts/src of this checkout


def test_abis_come_from_the_package():
    pool = pd.abi("Pool")
    assert any(e.get("name") == "liquidationCall" for e in pool)
    with pytest.raises(pd.ArtifactsMissing, match="NoSuchContract"):
        pd.abi("NoSuchContract")


def test_a_changed_source_makes_the_shipped_build_stale(tmp_path):
    (tmp_path / "A.sol").write_text("contract A {}")
    data = {"sources": pd.source_hashes(tmp_path)}
    assert pd.stale_reason(data, tmp_path) is None
    assert pd.stale_reason(data, None) is None  # an installed wheel has no sources to compare
    (tmp_path / "A.sol").write_text("contract A { uint x; }")
    (tmp_path / "B.sol").write_text("contract B {}")
    assert pd.stale_reason(data, tmp_path) == (
        "contracts/src changed since the package was built (A.sol, B.sol)")


def test_no_package_data_and_no_compiler_is_a_clear_error(monkeypatch):
    def no_node(*_a, **_k):
        raise DevnetError("node is not installed (needed to compile contracts/src)")

    monkeypatch.setattr(pd, "shipped_contracts", lambda: None)
    monkeypatch.setattr(pd, "compile_own", no_node)
    pd.own_contracts.cache_clear()
    try:
        with pytest.raises(pd.ArtifactsMissing, match="no package data keeper._artifacts/contracts.json.*node is not"):
            pd.own_contracts()
    finally:
        pd.own_contracts.cache_clear()


def test_the_slower_read_is_announced_once_with_its_reason():
    from structlog.testing import capture_logs

    from keeper.protocols.aave_v3 import lens as aave_reader

    aave_reader._fallback_logged.clear()
    try:
        with capture_logs() as logs:
            aave_reader.log_fallback("devnet", DevnetError("no lens bytecode"))
            aave_reader.log_fallback("other", DevnetError("no lens bytecode"))
    finally:
        aave_reader._fallback_logged.clear()
    assert [(x["log_level"], x["event"]) for x in logs] == [("warning", "reader.unavailable"),
                                                            ("debug", "reader.unavailable")]
    assert logs[0]["reason"] == "no lens bytecode" and logs[0]["fallback"] == "multicall3"
