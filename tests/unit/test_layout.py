"""The layout keeps its promises: pure math has no IO imports; env is read in one place."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "keeper"
IO_MODULES = {"web3", "httpx", "asyncio", "aiohttp", "eth_account", "sqlite3", "socket"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_health_math_is_pure():
    files = sorted((ROOT / "health").glob("*.py"))
    assert files, "keeper/health has no modules"
    for f in files:
        bad = _imports(f) & IO_MODULES
        assert not bad, f"{f.name} imports {bad}"


def test_environment_read_only_in_config():
    for f in ROOT.rglob("*.py"):
        text = f.read_text()
        if f.name in ("config.py", "demo.py") or "devnet" in f.parts:  # dev tools pass test keys on
            continue
        assert "os.environ" not in text and "os.getenv" not in text, f"{f} reads the environment"


def test_modules_stay_small():
    for f in ROOT.rglob("*.py"):
        n = len(f.read_text().splitlines())
        assert n <= 450, f"{f.relative_to(ROOT)} has {n} lines"
