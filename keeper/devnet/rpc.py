"""Raw JSON-RPC for the devnet: single calls, batches, calldata, and a queue of transactions
that are sent together (automine off), mined into a few big blocks, and each checked.

API::

    w3 = connect(rpc_url)                        # AsyncWeb3 with a long HTTP timeout
    await rpc(w3, "evm_mine", [])                # one call; a JSON-RPC error -> DevnetError
    await batch(w3, [("eth_getBalance", [a, "latest"]), ...])
    data = calldata(abi, "supply", [asset, amount, on_behalf, 0])

    txs = TxQueue(w3)
    await txs.load_nonces([deployer, *borrowers])  # or txs.set_nonce(addr, n)
    txs.add(sender, to, data, gas=..., label="borrow USDC #3")
    txs.call(sender, pool, pool_abi, "borrow", [...], gas=..., label="...")
    addr = txs.deploy(sender, creation_code, gas=..., label="deploy X")  # predicted address
    await txs.mine()            # send all, mine, raise DevnetError naming any failed tx
    receipt = await wait_receipt(w3, tx_hash)      # one tx sent with automine on or off

Senders must be unlocked or impersonated (``anvil_autoImpersonateAccount``): the devnet uses
``eth_sendTransaction`` so nothing is signed in Python. Within one block anvil orders
transactions by fee and then by each sender's nonce, so transactions that depend on another
sender's transaction go into a later ``mine()``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import rlp
from aiohttp import ClientTimeout
from eth_abi import encode
from eth_utils import (
    function_abi_to_4byte_selector,
    get_abi_input_types,
    keccak,
    to_checksum_address,
)
from web3 import AsyncHTTPProvider, AsyncWeb3

from keeper.errors import DevnetError

BATCH_SIZE = 500
SEND_CONCURRENCY = 4
MAX_FEE_PER_GAS = 100 * 10**9  # far above the idle base fee: every set-up tx gets in
PRIORITY_FEE = 10**9
MAX_MINE_ROUNDS = 20


def connect(rpc_url: str, timeout_s: float = 600.0) -> AsyncWeb3:
    """An AsyncWeb3 for the devnet, with a long timeout: mining a 2,000-tx block takes a while."""
    provider = AsyncHTTPProvider(rpc_url, request_kwargs={"timeout": ClientTimeout(total=timeout_s)})
    return AsyncWeb3(provider)


async def rpc(w3: AsyncWeb3, method: str, params: Sequence[Any]) -> Any:
    """One raw JSON-RPC call; returns ``result`` or raises DevnetError with the node's message."""
    try:
        resp = await w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    except Exception as e:  # transport errors of aiohttp / web3: wrap at the IO boundary
        raise DevnetError(f"{method} failed: {e}") from e
    if "error" in resp:
        raise DevnetError(f"{method} failed: {_short(resp['error'])}")
    return resp.get("result")


async def wait_receipt(w3: AsyncWeb3, tx_hash: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """The receipt of a sent tx, mining a block first when automine is off.

    With automine on, anvil mines right after ``eth_sendTransaction`` returns, not before:
    about 1 receipt in 40 is not there yet when asked at once (measured), so poll.
    """
    if not await rpc(w3, "anvil_getAutomine", []):
        await rpc(w3, "evm_mine", [])
    deadline = time.monotonic() + timeout_s
    while True:
        receipt = await rpc(w3, "eth_getTransactionReceipt", [tx_hash])
        if receipt is not None:
            return receipt
        if time.monotonic() > deadline:
            raise DevnetError(f"tx {tx_hash} not mined within {timeout_s:.0f} s")
        await asyncio.sleep(0.005)


async def batch(
    w3: AsyncWeb3,
    calls: Sequence[tuple[str, Sequence[Any]]],
    size: int = BATCH_SIZE,
    concurrency: int = 1,
) -> list[Any]:
    """JSON-RPC batches of ``size`` (``concurrency`` in flight); results in order.

    Any error raises DevnetError.
    """
    chunks = [[(m, list(p)) for m, p in calls[i : i + size]] for i in range(0, len(calls), size)]
    results: list[Any] = []
    for i in range(0, len(chunks), concurrency):
        group = chunks[i : i + concurrency]
        for part in await asyncio.gather(*(_one_batch(w3, c) for c in group)):
            results += part
    return results


async def _one_batch(w3: AsyncWeb3, chunk: list[tuple[str, list[Any]]]) -> list[Any]:
    try:
        resps = await w3.provider.make_batch_request(chunk)  # type: ignore[arg-type]
    except Exception as e:  # transport errors: wrap at the IO boundary
        raise DevnetError(f"batch of {len(chunk)} calls failed: {e}") from e
    if not isinstance(resps, list):
        raise DevnetError(f"batch of {len(chunk)} calls refused: {_short(resps.get('error'))}")
    out = []
    for (method, params), resp in zip(chunk, resps, strict=True):
        if "error" in resp:
            raise DevnetError(f"{method} failed: {_short(resp['error'])} (params {params!r:.300})")
        out.append(resp.get("result"))
    return out


def _short(error: Any, limit: int = 500) -> str:
    text = str(error.get("message", error)) if isinstance(error, dict) else str(error)
    return text if len(text) <= limit else text[:limit] + "..."


_FN_CACHE: dict[tuple[int, str, int], tuple[list[Any], bytes, list[str]]] = {}


def calldata(abi: list[dict[str, Any]], name: str, args: Sequence[Any]) -> str:
    """0x-hex calldata of ``name(args)``, the function picked by name and argument count."""
    key = (id(abi), name, len(args))
    hit = _FN_CACHE.get(key)
    if hit is None or hit[0] is not abi:
        fns = [
            f
            for f in abi
            if f.get("type") == "function"
            and f["name"] == name
            and len(f.get("inputs", [])) == len(args)
        ]
        if len(fns) != 1:
            raise DevnetError(f"{name} with {len(args)} args: {len(fns)} matches in the ABI")
        hit = (abi, function_abi_to_4byte_selector(fns[0]), get_abi_input_types(fns[0]))
        _FN_CACHE[key] = hit  # holds the ABI, so its id() is not reused while cached
    _, selector, types = hit
    if all(t in _STATIC_WORDS for t in types):  # hot path of seeding: ~10x eth_abi's speed
        return "0x" + selector.hex() + "".join(_word(t, a) for t, a in zip(types, args))
    return "0x" + (selector + encode(types, list(args))).hex()


_STATIC_WORDS = {"address", "bool", "uint8", "uint16", "uint256"}


def _word(abi_type: str, value: Any) -> str:
    """One ABI word (64 hex chars) of a static type; range-checked like eth_abi."""
    if abi_type == "address":
        raw = value.removeprefix("0x")
        if len(raw) != 40 or raw.strip("0123456789abcdefABCDEF"):
            raise DevnetError(f"not an address: {value!r}")
        return raw.lower().rjust(64, "0")
    if abi_type == "bool":
        return "1".rjust(64, "0") if value else "0" * 64
    bits = int(abi_type.removeprefix("uint"))
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**bits:
        raise DevnetError(f"{value!r} is not a {abi_type}")
    return format(value, "064x")


def constructor_args(abi: list[dict[str, Any]], args: Sequence[Any]) -> str:
    """Hex (no 0x) of ABI-encoded constructor arguments, to append to creation code."""
    ctors = [f for f in abi if f.get("type") == "constructor"]
    types = get_abi_input_types(ctors[0]) if ctors else []
    if len(types) != len(args):
        raise DevnetError(f"constructor takes {len(types)} args, got {len(args)}")
    return encode(types, list(args)).hex()


def create_address(sender: str, nonce: int) -> str:
    """The address a CREATE from ``sender`` at ``nonce`` deploys to."""
    raw = keccak(rlp.encode([bytes.fromhex(sender.removeprefix("0x")), nonce]))[12:]
    return to_checksum_address(raw)


@dataclass(frozen=True, slots=True)
class QueuedTx:
    label: str
    tx: dict[str, Any]


class TxQueue:
    """Transactions queued with explicit nonces, then sent in batches and mined together."""

    def __init__(self, w3: AsyncWeb3, block_size: int = 2_000):
        self.w3 = w3
        self.block_size = block_size
        self._nonces: dict[str, int] = {}
        self._queue: list[QueuedTx] = []

    def __len__(self) -> int:
        return len(self._queue)

    async def load_nonces(self, accounts: Sequence[str]) -> None:
        todo = [a for a in accounts if a not in self._nonces]
        counts = await batch(self.w3, [("eth_getTransactionCount", [a, "pending"]) for a in todo])
        for account, count in zip(todo, counts, strict=True):
            self._nonces[account] = int(count, 16)

    def set_nonce(self, account: str, nonce: int) -> None:
        self._nonces[account] = nonce

    def nonce(self, account: str) -> int:
        """The nonce the next queued tx from ``account`` will use."""
        try:
            return self._nonces[account]
        except KeyError as e:
            raise DevnetError(f"nonce of {account} not loaded (call load_nonces)") from e

    def add(
        self, sender: str, to: str | None, data: str, *, gas: int, label: str, value: int = 0
    ) -> int:
        """Queue a tx; returns its nonce (for ``create_address`` when ``to`` is None)."""
        nonce = self.nonce(sender)
        tx: dict[str, Any] = {
            "from": sender,
            "data": data,
            "gas": hex(gas),
            "nonce": hex(nonce),
            "maxFeePerGas": hex(MAX_FEE_PER_GAS),
            "maxPriorityFeePerGas": hex(PRIORITY_FEE),
            "value": hex(value),
        }
        if to is not None:
            tx["to"] = to
        self._queue.append(QueuedTx(label, tx))
        self._nonces[sender] = nonce + 1
        return nonce

    def call(
        self, sender: str, to: str, abi: list[dict[str, Any]], fn: str, args: Sequence[Any],
        *, gas: int, label: str,
    ) -> int:  # fmt: skip
        """Queue ``to.fn(args)`` from ``sender``; returns the nonce used."""
        return self.add(sender, to, calldata(abi, fn, args), gas=gas, label=label)

    def deploy(self, sender: str, creation_code: str, *, gas: int, label: str) -> str:
        """Queue a contract creation; returns the address it will have."""
        nonce = self.add(sender, None, creation_code, gas=gas, label=label)
        return create_address(sender, nonce)

    async def _mine_pool(self) -> None:
        for _ in range(MAX_MINE_ROUNDS):
            await rpc(self.w3, "evm_mine", [])
            status = await rpc(self.w3, "txpool_status", [])
            if int(status["pending"], 16) == 0 and int(status["queued"], 16) == 0:
                return
        raise DevnetError(f"transactions still pending after {MAX_MINE_ROUNDS} blocks")

    async def mine(self, log_filter: dict[str, Any] | None = None) -> None:
        """Send the queue, mine it (``block_size`` txs a block), check that every tx succeeded.

        A tx whose hash shows up in the mined blocks' logs succeeded: a revert discards every
        log. For the others (deployments of contracts that log nothing, or failures) the
        receipt is fetched and its status checked. Logs, not receipts, because anvil answers
        ``eth_getTransactionReceipt`` in time proportional to the block's size (2.6 ms per
        receipt in a 1,000-tx block) and ``eth_getBlockReceipts`` is quadratic.
        ``log_filter`` (``address`` / ``topics`` of eth_getLogs) narrows the logs fetched to
        those each tx is expected to emit; it only affects speed, never the verdict.
        Raises DevnetError naming each reverted or missing transaction. Automine must be off.
        """
        queued, self._queue = self._queue, []
        if not queued:
            return
        first = int(await rpc(self.w3, "eth_blockNumber", []), 16) + 1
        hashes: list[str] = []
        for i in range(0, len(queued), self.block_size):
            chunk = queued[i : i + self.block_size]
            sends = [("eth_sendTransaction", [q.tx]) for q in chunk]
            hashes += await batch(self.w3, sends, concurrency=SEND_CONCURRENCY)
            await self._mine_pool()
        last = int(await rpc(self.w3, "eth_blockNumber", []), 16)
        logged = await self._hashes_with_logs(first, last, log_filter or {})
        unsure = [(q, h) for q, h in zip(queued, hashes, strict=True) if h not in logged]
        receipts = await batch(self.w3, [("eth_getTransactionReceipt", [h]) for _, h in unsure])
        failed = []
        for (q, h), r in zip(unsure, receipts, strict=True):
            if r is None:
                failed.append(f"{q.label}: not mined (tx {h})")
            elif int(r["status"], 16) != 1:
                failed.append(f"{q.label}: reverted (tx {h}, block {int(r['blockNumber'], 16)})")
        if failed:
            shown = "\n  ".join(failed[:20])
            more = f"\n  ... and {len(failed) - 20} more" if len(failed) > 20 else ""
            raise DevnetError(
                f"{len(failed)} of {len(queued)} devnet set-up transactions failed:\n  {shown}{more}"
            )

    async def _hashes_with_logs(
        self, first: int, last: int, log_filter: dict[str, Any], step: int = 5
    ) -> set[str]:
        found: set[str] = set()
        for start in range(first, last + 1, step):
            end = min(start + step - 1, last)
            query = {**log_filter, "fromBlock": hex(start), "toBlock": hex(end)}
            logs = await rpc(self.w3, "eth_getLogs", [query])
            found.update(log["transactionHash"] for log in logs)
        return found
