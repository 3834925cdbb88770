"""keeper.health is pure math: it never imports web3, httpx or asyncio, even indirectly."""

import ast
import subprocess
import sys
from pathlib import Path

import keeper.health

FORBIDDEN = ("web3", "httpx", "asyncio", "eth_abi", "aiohttp", "requests")
HEALTH = Path(keeper.health.__file__).parent
MODULES = sorted(f"keeper.health.{p.stem}" for p in HEALTH.glob("*.py") if p.stem != "__init__")


def test_no_forbidden_import_statements():
    for path in HEALTH.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_no_forbidden_module_is_loaded_transitively():
    assert "keeper.health.aave_v3" in MODULES
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=HEALTH.parents[1])
    assert out.stdout.strip() == "[]"
