"""The layout keeps its promises: pure math has no IO imports; env is read in one place."""

import ast
import re
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
        if f.name in ("config.py", "demo.py", "demo_flash.py") or "devnet" in f.parts:  # dev tools pass test keys on
            continue
        assert "os.environ" not in text and "os.getenv" not in text, f"{f} reads the environment"


def test_modules_stay_small():
    for f in ROOT.rglob("*.py"):
        n = len(f.read_text().splitlines())
        assert n <= 450, f"{f.relative_to(ROOT)} has {n} lines"


# -- the shape: generic modules never name a protocol; imports never run back up or in circles --

GENERIC = ["engine.py", "decide.py", "respond.py", "runner.py", "wiring.py", "cli.py", "doctor.py",
           "demo.py", "prices.py", "model.py", "checks.py", "executors", "notify", "chain"]
PROTOCOL_PACKAGES = sorted(p.name for p in (ROOT / "protocols").iterdir()
                           if p.is_dir() and (p / "__init__.py").exists())


def _files(names):
    for n in names:
        p = ROOT / n
        yield from (sorted(p.rglob("*.py")) if p.is_dir() else [p])


def _all_imports(path: Path) -> set[str]:
    """Every keeper module ``path`` imports, at module level or inside a function."""
    tree = ast.parse(path.read_text())
    here = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("keeper")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[:-node.level]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("keeper"):
                out.add(mod)
                out |= {f"{mod}.{a.name}" for a in node.names}  # "from pkg import module"
    return out


def test_every_protocol_package_is_registered_and_complete():
    from keeper.protocols.registry import PROTOCOLS

    assert sorted(PROTOCOLS) == PROTOCOL_PACKAGES
    for name in PROTOCOL_PACKAGES:
        for part in ("adapter.py", "config.py", "doctor.py", "plan.py", "math.py"):
            assert (ROOT / "protocols" / name / part).exists(), f"protocols/{name}/{part} is missing"


def test_generic_modules_never_import_a_protocol_package_or_name_its_classes():
    names = re.compile(r"\b(AaveV3|AaveV3Adapter|AaveMarketState|AaveAccount|MorphoBlueAdapter|"
                       r"MorphoMarketAdapter|MorphoMarket|MorphoPosition|CometAdapter|CometMarket|"
                       r"CompoundV3|CometAccount)\b")
    for f in _files(GENERIC):
        bad = {m for m in _all_imports(f) if any(m.startswith(f"keeper.protocols.{p}") for p in PROTOCOL_PACKAGES)}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}: go through keeper.protocols.registry"
        code = "\n".join(l for l in f.read_text().splitlines() if not l.lstrip().startswith("#"))
        assert not names.search(code), f"{f.relative_to(ROOT)} names {names.search(code).group(0)}"
        assert not re.search(r"\"(aave_v3|morpho_blue|compound_v3)\"", code), \
            f"{f.relative_to(ROOT)} branches on a protocol name"


def test_imports_never_run_back_up():
    rules = [("protocols", ("keeper.devnet", "keeper.executors", "keeper.engine", "keeper.respond",
                            "keeper.wiring", "keeper.cli", "keeper.notify")),
             ("chain", ("keeper.protocols", "keeper.devnet", "keeper.executors", "keeper.engine")),
             ("health", ("keeper.protocols", "keeper.chain", "keeper.executors")),
             ("config.py", ("keeper.executors", "keeper.engine", "keeper.devnet", "keeper.notify.service")),
             ("executors", ("keeper.respond", "keeper.engine", "keeper.wiring", "keeper.devnet"))]
    for where, forbidden in rules:
        for f in _files([where]):
            bad = {m for m in _all_imports(f) if m.startswith(forbidden)}
            assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_no_import_cycles():
    modules = {".".join(p.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__"): p
               for p in ROOT.rglob("*.py")}
    graph = {m: {i for i in _all_imports(p) if i in modules and i != m} for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if n.startswith(m + "."):  # a package importing its own modules is not a cycle
                continue
            if state.get(n) == 1:
                cycle = path[path.index(n):] + [n] if n in path else [m, n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
