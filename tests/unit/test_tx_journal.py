"""Journal: states, already_done, the daily spend sum, and reconcile against a scripted node
(FakeNode sits behind Rpc's transport seam, ``provider.make_request``)."""

from __future__ import annotations

from typing import Any

import pytest
import rlp
from eth_utils import keccak

from keeper.chain.rpc import Rpc
from keeper.config import Secret
from keeper.executors import GWEI
from keeper.executors.guard import Fees
from keeper.executors.journal import DAY_S, Journal
from keeper.executors.signer import Signer
from keeper.store import Store

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
TOKEN = "0x" + "22" * 20


class Refusal(Exception):
    def __init__(self, message: str, data: str | None = None):
        super().__init__(message)
        self.data = data


class FakeNode:
    """One sender's view of a node: a mempool, blocks, receipts. ``automine`` mines each
    accepted tx at once; ``refusals`` are returned to the next eth_sendRawTransaction calls;
    ``transport_failures`` makes them raise (the request may or may not have arrived)."""

    def __init__(self, nonce: int = 0):
        self.nonce, self.block, self.base_fee = nonce, 100, GWEI
        self.pool: dict[str, tuple[int, str]] = {}
        self.receipts: dict[str, dict[str, Any]] = {}
        self.accepted: list[str] = []
        self.refusals: list[str] = []
        self.transport_failures = 0
        self.automine = True
        self.revert: bytes | None = None
        self.methods: list[str] = []

    def rpc(self) -> Rpc:
        r = Rpc("http://127.0.0.1:9")
        r.provider = self  # type: ignore[assignment]
        return r

    async def make_request(self, method: str, params: list[Any]) -> dict[str, Any]:
        self.methods.append(method)
        if method == "eth_sendRawTransaction" and self.transport_failures:
            self.transport_failures -= 1
            raise ConnectionError("connection reset")
        try:
            return {"jsonrpc": "2.0", "id": 1, "result": getattr(self, method)(*params)}
        except Refusal as e:
            return {"jsonrpc": "2.0", "id": 1, "error": {"code": 3, "message": str(e), "data": e.data}}

    async def make_batch_request(self, calls: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        return [await self.make_request(m, p) for m, p in calls]

    async def disconnect(self) -> None:
        pass

    # -- methods ----------------------------------------------------------------------
    def eth_chainId(self) -> str:
        return hex(31337)

    def eth_call(self, _tx: dict, _tag: str) -> str:
        if self.revert is not None:
            raise Refusal("execution reverted", "0x" + self.revert.hex())
        return "0x"

    def eth_estimateGas(self, tx: dict, tag: str) -> str:
        self.eth_call(tx, tag)
        return hex(50_000)

    def eth_getBlockByNumber(self, _tag: str, _full: bool) -> dict[str, Any]:
        return {"number": hex(self.block), "baseFeePerGas": hex(self.base_fee)}

    def eth_blockNumber(self) -> str:
        return hex(self.block)

    def eth_getTransactionCount(self, _who: str, tag: str) -> str:
        return hex(self.nonce + (len({n for n, _ in self.pool.values()}) if tag == "pending" else 0))

    def eth_sendRawTransaction(self, raw: str) -> str:
        if self.refusals:
            raise Refusal(self.refusals.pop(0))
        body = bytes.fromhex(raw[2:])
        nonce = int.from_bytes(rlp.decode(body[1:])[1], "big")
        tx_hash = "0x" + keccak(body).hex()
        if nonce < self.nonce:
            raise Refusal("nonce too low")
        if tx_hash in self.pool or tx_hash in self.receipts:
            raise Refusal("already known")
        self.pool[tx_hash] = (nonce, raw)
        self.accepted.append(raw)
        if self.automine:
            self.mine()
        return tx_hash

    def eth_getTransactionReceipt(self, tx_hash: str) -> dict[str, Any] | None:
        return self.receipts.get(tx_hash)

    def eth_getTransactionByHash(self, tx_hash: str) -> dict[str, Any] | None:
        return {"hash": tx_hash} if tx_hash in self.pool or tx_hash in self.receipts else None

    def mine(self) -> None:
        """One block: the pooled tx of the next nonce (the latest one sent, if several)."""
        self.block += 1
        best = [h for h, (n, _) in self.pool.items() if n == self.nonce]
        if best:
            h = best[-1]
            self.receipts[h] = {"transactionHash": h, "status": "0x1", "gasUsed": hex(40_000),
                                "effectiveGasPrice": hex(2 * GWEI), "blockNumber": hex(self.block),
                                "logs": []}
            self.pool = {k: v for k, v in self.pool.items() if v[0] != self.nonce}
            self.nonce += 1

    def use_nonce_elsewhere(self) -> None:
        self.nonce += 1
        self.block += 1


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "k.sqlite")
    yield s
    s.close()


@pytest.fixture
def journal(store) -> Journal:
    return Journal(store)


def signed_row(journal: Journal, key: str, nonce: int, attempt: int = 0, fee: int = 2 * GWEI,
               value: int = 0):
    signer = Signer(Secret(KEY))
    fees = Fees(fee, GWEI)
    tx = {"type": 2, "chainId": 31337, "nonce": nonce, "to": TOKEN, "value": value, "data": b"\x01",
          "gas": 100_000, "maxFeePerGas": fee, "maxPriorityFeePerGas": GWEI}
    return journal.record_signed(action_key=key, sender=signer.address, nonce=nonce, attempt=attempt,
                                 purpose="p", to=TOKEN, data=b"\x01", value=value, gas_limit=100_000,
                                 fees=fees, max_cost_wei=10**17, signed=signer.sign(tx))


def test_table_is_created_once_and_rows_round_trip(store, journal):
    Journal(store)  # IF NOT EXISTS: a second open is fine
    row = signed_row(journal, "a", 0)
    (back,) = journal.rows("a")
    assert back == row and back.state == "signed" and back.raw_tx.startswith("0x02")
    assert journal.group(row.sender, 0) == [row]


@pytest.mark.parametrize(("state", "done"), [
    ("signed", True), ("sent", True), ("mined", True), ("reverted", True),
    ("failed", False), ("dropped", False),
])
def test_already_done_by_state(journal, state, done):
    row = signed_row(journal, "k", 0)
    journal.mark(row, state)
    assert journal.already_done("k") is done
    assert not journal.already_done("other")


def test_spent_in_day(store, journal):
    a = signed_row(journal, "a", 0, value=5)
    journal.record_receipt([a], {"transactionHash": a.hash, "status": "0x1", "gasUsed": hex(10),
                                 "effectiveGasPrice": hex(3), "blockNumber": "0x1", "logs": []})
    b = signed_row(journal, "b", 1, value=7)
    journal.record_receipt([b], {"transactionHash": b.hash, "status": "0x0", "gasUsed": hex(20),
                                 "effectiveGasPrice": hex(3), "blockNumber": "0x1", "logs": []})
    assert journal.spent_in_day() == 30 + 5 + 60  # value only when mined
    # in flight: the worst attempt of each nonce
    signed_row(journal, "c", 2, fee=GWEI)
    signed_row(journal, "c", 2, attempt=1, fee=2 * GWEI)
    assert journal.spent_in_day() == 95 + 100_000 * 2 * GWEI
    with store.transaction() as db:  # a day old: out of the window
        db.execute("UPDATE tx_journal SET updated_at = updated_at - ? WHERE id = ?", (DAY_S + 1, a.id))
    assert journal.spent_in_day() == 60 + 100_000 * 2 * GWEI


def test_receipt_marks_siblings_replaced(journal):
    a = signed_row(journal, "k", 0, fee=GWEI)
    b = signed_row(journal, "k", 0, attempt=1, fee=2 * GWEI)
    out = journal.record_receipt([a, b], {"transactionHash": b.hash, "status": "0x1", "gasUsed": hex(21000),
                                          "effectiveGasPrice": hex(GWEI), "blockNumber": "0x9", "logs": [{"x": 1}]})
    assert (out.status, out.hash, out.block, out.cost_wei, out.logs) == ("mined", b.hash, 9, 21000 * GWEI, ({"x": 1},))
    assert [r.state for r in journal.rows("k")] == ["replaced", "mined"]


async def test_reconcile_mined_is_recorded_without_sending(journal):
    node = FakeNode()
    row = signed_row(journal, "k", 0)
    node.eth_sendRawTransaction(row.raw_tx)  # it got out before the crash
    sent = len(node.accepted)
    outcomes, pending = await journal.reconcile(node.rpc())
    assert [(o.hash, o.status) for o in outcomes] == [(row.hash, "mined")] and pending == []
    assert len(node.accepted) == sent


async def test_reconcile_in_mempool_keeps_waiting(journal):
    node = FakeNode()
    node.automine = False
    row = signed_row(journal, "k", 0)
    node.eth_sendRawTransaction(row.raw_tx)
    outcomes, pending = await journal.reconcile(node.rpc())
    assert outcomes == [] and [[r.state for r in g] for g in pending] == [["sent"]]
    assert node.accepted == [row.raw_tx]  # not sent again


async def test_reconcile_never_broadcast_sends_the_same_raw_tx(journal):
    node = FakeNode()
    node.automine = False
    row = signed_row(journal, "k", 0)
    outcomes, pending = await journal.reconcile(node.rpc())
    assert node.accepted == [row.raw_tx]  # the very same bytes: same nonce, same hash
    assert [[(r.hash, r.state) for r in g] for g in pending] == [[(row.hash, "sent")]]
    node.mine()
    outcomes, pending = await journal.reconcile(node.rpc())
    assert [o.hash for o in outcomes] == [row.hash] and pending == []
    assert journal.already_done("k")


async def test_reconcile_drops_a_tx_whose_nonce_went_elsewhere(journal):
    node = FakeNode()
    row = signed_row(journal, "k", 0)
    node.use_nonce_elsewhere()
    outcomes, pending = await journal.reconcile(node.rpc())
    assert outcomes == [] and pending == [] and node.accepted == []
    assert [r.state for r in journal.rows("k")] == ["dropped"] and not journal.already_done("k")
    assert "used by another transaction" in journal.rows("k")[0].error
    assert row.nonce == 0
