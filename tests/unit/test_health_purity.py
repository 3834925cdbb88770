"""The math is pure: keeper.health and each protocol package's math, health, planning and
encoding modules never import web3, httpx or asyncio, even indirectly."""

import ast
import subprocess
import sys
from pathlib import Path

import keeper

FORBIDDEN = ("web3", "httpx", "asyncio", "aiohttp", "requests", "sqlite3")  # IO; eth_abi is a codec
ROOT = Path(keeper.__file__).parent
# in every protocol package, these modules hold pure math, planners, encoders and values
PURE_STEMS = {"math", "health", "account", "fast", "math36", "liquidation36", "topup36", "liquidation", "topup", "plan", "encode", "model", "evaluate"}
PATHS = sorted([p for p in (ROOT / "health").glob("*.py") if p.stem != "__init__"]
               + [p for p in (ROOT / "protocols").glob("*/*.py") if p.stem in PURE_STEMS]
               + [ROOT / "decide.py", ROOT / "prices.py", ROOT / "model.py"])
MODULES = [".".join(p.relative_to(ROOT.parent).with_suffix("").parts) for p in PATHS]


def test_no_forbidden_import_statements():
    for path in PATHS:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_no_forbidden_module_is_loaded_transitively():
    for m in ("keeper.protocols.aave_v3.health", "keeper.protocols.morpho_blue.math",
              "keeper.protocols.compound_v3.math", "keeper.decide"):
        assert m in MODULES
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT.parent)
    assert out.stdout.strip() == "[]"
