"""Start and stop a local anvil node (the binary npm ``@foundry-rs/anvil`` puts in node_modules).

API::

    proc = start_anvil(port=0, log_path=None)   # 0 -> a free port; waits until it answers
    proc.rpc_url                                 # "http://127.0.0.1:<port>"
    stop_anvil(proc.pid)                         # SIGTERM, then SIGKILL; only if it is anvil
    is_anvil_running(pid)

anvil runs in its own session (``start_new_session``), so it outlives ``keeper devnet up``;
``down`` stops it later by the PID recorded in the state dir (see ``keeper.devnet.state``).
Only 127.0.0.1 is ever bound.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from keeper.devnet.artifacts import ANVIL_BIN
from keeper.errors import DevnetError

HOST = "127.0.0.1"
CHAIN_ID = 31337
# A big block so that set-up lands in a few blocks; blocks stay far from full (base fee falls).
BLOCK_GAS_LIMIT = 1_000_000_000_000
DEFAULT_ACCOUNTS = 10


@dataclass(frozen=True, slots=True)
class AnvilProcess:
    pid: int
    port: int
    log_path: str | None

    @property
    def rpc_url(self) -> str:
        return f"http://{HOST}:{self.port}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def anvil_command(port: int) -> list[str]:
    return [
        str(ANVIL_BIN),
        "--host", HOST,
        "--port", str(port),
        "--chain-id", str(CHAIN_ID),
        "--accounts", str(DEFAULT_ACCOUNTS),
        "--gas-limit", str(BLOCK_GAS_LIMIT),
        "--code-size-limit", str(0x10000),
        "--no-request-size-limit",
        "--quiet",
    ]  # fmt: skip


HOME_PREFIX = "keeper-anvil-home-"  # start_anvil's private HOME for one anvil


def start_anvil(
    port: int = 0, log_path: str | Path | None = None, timeout_s: float = 20.0,
    extra_args: tuple[str, ...] = (),
) -> AnvilProcess:
    """Start anvil on 127.0.0.1:``port`` (a free port when 0) and wait until it answers.
    ``extra_args``: more anvil options (bench/scale.py: ``--prune-history``)."""
    if not ANVIL_BIN.is_file():
        raise DevnetError(f"anvil binary missing: {ANVIL_BIN} (run `npm install`; make does it)")
    if port:
        return _start(port, log_path, timeout_s, extra_args)
    for _ in range(PORT_TRIES - 1):  # a free port may be taken before anvil binds it
        try:
            return _start(free_port(), log_path, timeout_s, extra_args)
        except _Exited:
            pass
    return _start(free_port(), log_path, timeout_s, extra_args)


PORT_TRIES = 3  # start_anvil(port=0): free ports tried when anvil exits at start


class _Exited(DevnetError):
    """anvil exited at start (its port was taken, among other causes)."""


def _start(port: int, log_path: str | Path | None, timeout_s: float,
           extra_args: tuple[str, ...]) -> AnvilProcess:
    if _answers(port):
        raise DevnetError(f"something already answers JSON-RPC on {HOST}:{port}")
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    # anvil writes states older than the ones it keeps in memory to $HOME/.foundry/anvil/tmp and
    # leaves them there when stopped (about 4 GB per test run): give it a HOME of its own,
    # removed by stop_anvil
    home = tempfile.mkdtemp(prefix=HOME_PREFIX)
    try:
        proc = subprocess.Popen(
            anvil_command(port) + list(extra_args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "HOME": home},
        )
    except OSError as e:
        shutil.rmtree(home, ignore_errors=True)
        raise DevnetError(f"cannot start anvil ({ANVIL_BIN}): {e}") from e
    finally:
        if log is not subprocess.DEVNULL:
            log.close()
    anvil = AnvilProcess(proc.pid, port, str(log_path) if log_path else None)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            shutil.rmtree(home, ignore_errors=True)
            raise _Exited(
                f"anvil exited with code {proc.returncode} at start on port {port}"
                + (f"; see {log_path}" if log_path else "")
            )
        if _answers(port):
            return anvil
        time.sleep(0.05)
    stop_anvil(proc.pid)
    raise DevnetError(f"anvil did not answer on {HOST}:{port} within {timeout_s:.0f} s")


def is_anvil_running(pid: int) -> bool:
    """True when ``pid`` is alive and is an anvil process (guards against recycled PIDs)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if b"anvil" not in cmdline:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie is not running


def stop_anvil(pid: int, timeout_s: float = 10.0) -> bool:
    """Stop the anvil with this PID and remove the HOME start_anvil gave it (its on-disk
    states). Returns False when no such anvil was running."""
    if not is_anvil_running(pid):
        _reap(pid)
        return False
    home = _own_home(pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_anvil_running(pid):
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        _reap(pid)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)
    return True


def _own_home(pid: int) -> str | None:
    """The HOME start_anvil made for this anvil (None for any other)."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"HOME="):
            home = item[5:].decode(errors="replace")
            name = os.path.basename(home)
            if name.startswith(HOME_PREFIX) and os.path.dirname(home) == tempfile.gettempdir():
                return home
    return None


def _reap(pid: int) -> None:
    """Collect the exit status when anvil is our child (no-op when another process started it)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _answers(port: int) -> bool:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    req = urllib.request.Request(
        f"http://{HOST}:{port}",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=1.0) as resp:
            return "result" in json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
