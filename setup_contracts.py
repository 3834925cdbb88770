"""Build step: compile keeper's own Solidity into the package (setuptools ``build_py``).

``pip install .``, ``pip wheel .`` and ``pip install -e .`` (``make install``) run this
before the Python files are collected:

* ``node keeper/devnet/compile.js contracts/src keeper/_artifacts/contracts.json``
  (npm solc 0.8.19 from ``node_modules``; the same script keeper used to run at first use,
  cached by a hash of the compiler, settings and sources), giving the ABI, creation and
  runtime bytecode of every contract under contracts/src (the AaveAccountsReader lens,
  PriceFeed, CometStandIn and any added later);
* ``contracts/abi/*.json`` copied to ``keeper/_artifacts/abi/``.

Both land in ``keeper/_artifacts/`` (gitignored), which ``[tool.setuptools.package-data]``
puts in the wheel; at run time ``keeper.package_data`` reads them and needs no Node.
Building from an sdist that already carries ``keeper/_artifacts`` works without Node;
with neither Node + ``node_modules`` nor prebuilt artifacts the build stops and says why.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "keeper" / "_artifacts"


def build_artifacts(root: Path = ROOT, out: Path = OUT) -> Path:
    """Compile contracts/src and copy contracts/abi into ``out``; return the contracts JSON."""
    target = out / "contracts.json"
    compile_js = root / "keeper" / "devnet" / "compile.js"
    solc = root / "node_modules" / "solc"
    node = shutil.which("node")
    if node and solc.is_dir():
        proc = subprocess.run([node, str(compile_js), str(root / "contracts" / "src"), str(target)],
                              cwd=root, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"compiling contracts/src failed:\n{proc.stderr.strip()}")
    elif not target.is_file():
        why = "node is not on PATH" if not node else f"{solc} is missing"
        raise RuntimeError(f"cannot build keeper's contracts: {why}; run `npm ci` (or `make install`) "
                           "first, or build from an sdist that carries keeper/_artifacts")
    abi_src, abi_out = root / "contracts" / "abi", out / "abi"
    if abi_src.is_dir():
        abi_out.mkdir(parents=True, exist_ok=True)
        for f in sorted(abi_src.glob("*.json")):
            shutil.copyfile(f, abi_out / f.name)
    return target


class BuildPy(build_py):
    """``build_py`` that first writes keeper/_artifacts (see the module docstring)."""

    def run(self) -> None:
        build_artifacts()
        super().run()
