"""keeper/dex keeps its promise: the math, routes, plans and encoders do no IO; only
quoter.py, sources.py and reader.py read the chain (through keeper.chain.rpc)."""

from pathlib import Path

from tests.unit.test_layout import IO_MODULES, _imports

DEX = Path(__file__).resolve().parents[2] / "keeper" / "dex"
PURE = ("v3_math.py", "v3_pool.py", "route.py", "capital_free.py", "liquidator.py", "flash_plans.py",
        "view.py")


def test_dex_math_and_plans_are_pure():
    for name in PURE:
        bad = _imports(DEX / name) & (IO_MODULES | {"keeper.chain"})
        assert not bad, f"{name} imports {bad}"
        text = (DEX / name).read_text()
        assert "keeper.chain" not in text and "keeper.devnet" not in text, name


def test_only_the_readers_touch_the_chain():
    readers = {f.name for f in DEX.glob("*.py") if "keeper.chain" in f.read_text()}
    assert readers == {"quoter.py", "sources.py", "reader.py", "protection_reader.py"}
