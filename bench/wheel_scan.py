"""An installed wheel, without Node, scans as fast as the checkout: the lens path, same requests.

    .venv/bin/python bench/wheel_scan.py [--borrowers 10000] [--port 0]

1. builds the wheel from a copy of the tracked files (pip wheel; the build step compiles
   contracts/src with npm solc into keeper/_artifacts);
2. makes a fresh virtualenv outside the checkout and pip-installs that wheel (its
   dependencies come from the package index, or pip's cache);
3. starts anvil with an Aave V3 devnet of ``--borrowers`` positions (from the checkout);
4. runs ``keeper scan`` twice on the same config and block: from the fresh venv with
   PATH holding only that venv's bin/ (no node, no npm) and its working directory in a
   temp dir, then from the checkout; prints both `scan.done` request counts and whether
   either fell back (``reader.unavailable``) or compiled (``contracts.compile``).

Exit 1 when the wheel's scan did not use the lens or needed more requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sh(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def build_wheel(tmp: Path) -> Path:
    tree = tmp / "tree"
    for rel in filter(None, sh("git", "ls-files", "-z", cwd=ROOT).stdout.split("\0")):
        if (ROOT / rel).is_file():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, tree / rel)
    (tree / "node_modules").symlink_to(ROOT / "node_modules")
    sh(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp / "dist"),
       str(tree))
    (whl,) = (tmp / "dist").glob("keeper-*.whl")
    return whl


def block_number(url: str) -> int:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return int(json.loads(r.read())["result"], 16)


def scan(keeper: list[str], config: Path, block: int, env: dict, cwd: Path) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([*keeper, "scan", "--config", str(config), "--json", "--block", str(block),
                          "--log-format", "json"], capture_output=True, text=True, env=env, cwd=cwd)
    if out.returncode != 0:
        raise SystemExit(f"keeper scan failed ({out.returncode}):\n{out.stderr[-3000:]}")
    events = [json.loads(x) for x in out.stderr.splitlines() if x.startswith("{")]
    done = next(e for e in events if e["event"] == "scan.done")
    return {"seconds": time.perf_counter() - t0, "positions": done["positions"],
            "scan_requests": done["scan_requests"], "scan_ms": done["scan_ms"], "discovery_requests": done["discovery_requests"],
            "fell_back": any(e["event"] == "reader.unavailable" for e in events),
            "compiled": any(e["event"] == "contracts.compile" for e in events)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--borrowers", type=int, default=10_000)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    from keeper.devnet.anvil import start_anvil, stop_anvil
    from keeper.devnet.api import deploy
    from keeper.devnet.state import write_keeper_config

    with tempfile.TemporaryDirectory(prefix="keeper-wheel-") as t:
        tmp = Path(t)
        t0 = time.perf_counter()
        whl = build_wheel(tmp)
        print(f"wheel   {whl.name} built in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        sh(sys.executable, "-m", "venv", str(tmp / "venv"))
        sh(str(tmp / "venv/bin/python"), "-m", "pip", "install", "--quiet", str(whl))
        print(f"venv    fresh, wheel installed in {time.perf_counter() - t0:.1f} s")
        anvil = start_anvil(args.port, log_path=tmp / "anvil.log")
        try:
            t0 = time.perf_counter()
            info = asyncio.run(deploy(anvil.rpc_url, args.borrowers, 1))
            print(f"devnet  Aave V3 with {len(info.borrowers)} borrowers in {time.perf_counter() - t0:.1f} s")
            cfgs = {}
            for who in ("wheel", "checkout"):  # each its own store: both discover from nothing
                cfgs[who] = write_keeper_config(info, tmp / f"{who}.toml")
                with cfgs[who].open("a") as f:
                    f.write(f'\n[store]\npath = "{tmp / who}.sqlite"\n')
            block = block_number(anvil.rpc_url)
            bare = {"PATH": str(tmp / "venv/bin"), "HOME": str(tmp)}
            assert shutil.which("node", path=bare["PATH"]) is None
            # wheel, checkout, wheel again: the first scan after a deploy also warms anvil's caches
            wheel = scan([str(tmp / "venv/bin/keeper")], cfgs["wheel"], block, bare, tmp)
            checkout = scan([str(ROOT / ".venv/bin/keeper")], cfgs["checkout"], block, dict(os.environ), ROOT)
            (tmp / "wheel.sqlite").unlink()
            again = scan([str(tmp / "venv/bin/keeper")], cfgs["wheel"], block, bare, tmp)
        finally:
            stop_anvil(anvil.pid)
    for name, r in (("wheel, no node", wheel), ("checkout", checkout), ("wheel again", again)):
        print(f"{name:15} {r['positions']:>6} positions: scan {r['scan_requests']} requests "
              f"(discovery {r['discovery_requests']}), lens {'NO' if r['fell_back'] else 'yes'}, "
              f"compiled {'yes' if r['compiled'] else 'no'}, scan {r['scan_ms']} ms, "
              f"{r['seconds']:.1f} s for the whole command")
    ok = all(not r["fell_back"] and not r["compiled"] and r["scan_requests"] <= checkout["scan_requests"]
             for r in (wheel, again))
    print("OK: same lens path without Node" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
