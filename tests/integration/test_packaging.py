"""What the package ships: the bytecode of contracts/src compiled at build time equals a fresh
compile of contracts/src, and a wheel built from a clean copy of the tree carries it (and
contracts/abi) inside keeper/_artifacts.

Both recompile with npm solc from node_modules (installed by make); the wheel is built with
pip from a copy of the tracked files, so the working tree is left as it was.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from keeper.package_data import shipped_contracts, source_hashes

ROOT = Path(__file__).resolve().parents[2]
COMPILE_JS = ROOT / "keeper" / "devnet" / "compile.js"
FIELDS = ("abi", "bytecode", "deployedBytecode", "linkReferences")


def fresh_compile(out: Path) -> dict:
    subprocess.run(["node", str(COMPILE_JS), str(ROOT / "contracts" / "src"), str(out)],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    return json.loads(out.read_text())


def test_shipped_bytecode_equals_a_fresh_compile_of_contracts_src(tmp_path):
    shipped = shipped_contracts()
    assert shipped is not None, "keeper/_artifacts/contracts.json missing: run `make install`"
    fresh = fresh_compile(tmp_path / "contracts.json")  # an empty dir: no cache, solc runs
    assert shipped["sources"] == source_hashes(ROOT / "contracts" / "src") == fresh["sources"]
    assert set(shipped["contracts"]) == set(fresh["contracts"])
    assert {"AaveAccountsReader", "PriceFeed", "CometStandIn"} <= set(shipped["contracts"])
    for name, c in fresh["contracts"].items():
        for field in FIELDS:
            assert shipped["contracts"][name][field] == c[field], (name, field)
    assert len(shipped["contracts"]["AaveAccountsReader"]["deployedBytecode"]) > 1000


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built by pip from a copy of the tracked files (node_modules linked in)."""
    src = tmp_path_factory.mktemp("tree")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    (src / "node_modules").symlink_to(ROOT / "node_modules")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
                    str(out), str(src)], check=True, capture_output=True, timeout=600)
    (whl,) = out.glob("keeper-*.whl")
    return whl


def test_the_wheel_carries_bytecode_and_abis(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        packed = json.loads(z.read("keeper/_artifacts/contracts.json"))
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    abis = {p.name for p in (ROOT / "contracts" / "abi").glob("*.json")}
    assert abis and {f"keeper/_artifacts/abi/{n}" for n in abis} <= names
    assert "keeper/package_data.py" in names and "keeper/protocols/aave_v3/lens.py" in names
    assert not any(n.startswith(("tests/", "node_modules/", "build/")) for n in names)
    shipped = shipped_contracts()
    assert shipped is not None
    for name, c in packed["contracts"].items():  # compiled afresh in the copy: same bytes
        for field in FIELDS:
            assert shipped["contracts"][name][field] == c[field], (name, field)
    assert "License-Expression: MIT" in meta
