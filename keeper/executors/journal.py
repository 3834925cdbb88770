"""The tx journal: every signed transaction, written and COMMITTED before it is broadcast.

One row per signed transaction (a replacement is a new row: same action_key and nonce,
new hash, ``attempt`` + 1). States::

    signed ──> sent ──> mined | reverted      (final: the receipt is recorded)
       │         └────> replaced              (final: a sibling of the same nonce was mined)
       ├──────────────> dropped               (final: the nonce was used by another tx)
       └──────────────> failed                (final: the node refused it; nothing was sent)

Because the row exists before the broadcast, a crash at any point leaves a trace:
:meth:`Journal.reconcile` at start-up looks every open row up by hash (receipt, mempool)
and by nonce (``eth_getTransactionCount(latest) > nonce`` means the nonce is used):
mined -> recorded; in the mempool -> left to wait; never broadcast -> the SAME signed raw
tx is broadcast again (same nonce, same hash: it cannot execute twice); its nonce used by
something else -> dropped. :meth:`already_done` tells callers an action_key was sent.
Amounts are stored as decimal TEXT (they can exceed 2**63); times as unix seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Any

import structlog

from keeper.chain.rpc import Rpc
from keeper.errors import SourceError
from keeper.executors import TxOutcome
from keeper.executors.guard import Fees
from keeper.store import Store

OPEN = ("signed", "sent")
FINAL = ("mined", "reverted", "replaced", "dropped", "failed")
DONE = ("signed", "sent", "mined", "reverted")  # an action with such a row was (maybe) sent
DAY_S = 86_400
_ALREADY = ("already known", "already imported", "known transaction")
_NONCE_LOW = ("nonce too low", "nonce has already been used")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tx_journal (
        id INTEGER PRIMARY KEY AUTOINCREMENT, hash TEXT NOT NULL,
        action_key TEXT NOT NULL, sender TEXT NOT NULL,
        nonce INTEGER NOT NULL, attempt INTEGER NOT NULL, state TEXT NOT NULL,
        purpose TEXT NOT NULL, to_address TEXT NOT NULL, data TEXT NOT NULL,
        value TEXT NOT NULL, gas_limit INTEGER NOT NULL, max_fee_per_gas TEXT NOT NULL,
        priority_fee_per_gas TEXT NOT NULL, max_cost_wei TEXT NOT NULL, raw_tx TEXT NOT NULL,
        block INTEGER, gas_used INTEGER, effective_gas_price TEXT, cost_wei TEXT, error TEXT,
        created_at REAL NOT NULL, updated_at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS tx_journal_action ON tx_journal (action_key)",
    "CREATE INDEX IF NOT EXISTS tx_journal_hash ON tx_journal (hash)",
    "CREATE INDEX IF NOT EXISTS tx_journal_nonce ON tx_journal (sender, nonce)",
    "CREATE INDEX IF NOT EXISTS tx_journal_state ON tx_journal (state, updated_at)",
)
_INT_TEXT = ("value", "max_fee_per_gas", "priority_fee_per_gas", "max_cost_wei",
             "effective_gas_price", "cost_wei")


@dataclass(frozen=True, slots=True)
class JournalRow:
    id: int  # a refused tx and a later one can share a hash (same nonce, same calldata)
    hash: str
    action_key: str
    sender: str
    nonce: int
    attempt: int
    state: str
    purpose: str
    to_address: str
    data: str  # 0x-hex calldata
    value: int
    gas_limit: int
    max_fee_per_gas: int
    priority_fee_per_gas: int
    max_cost_wei: int
    raw_tx: str
    block: int | None
    gas_used: int | None
    effective_gas_price: int | None
    cost_wei: int | None
    error: str | None
    created_at: float
    updated_at: float

    @property
    def fees(self) -> Fees:
        return Fees(self.max_fee_per_gas, self.priority_fee_per_gas)

    @property
    def worst_cost(self) -> int:
        return self.fees.worst_cost(self.gas_limit, self.value)


_COLUMNS = tuple(f.name for f in fields(JournalRow))
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM tx_journal"


def _row(values: tuple) -> JournalRow:
    kw = dict(zip(_COLUMNS, values, strict=True))
    for k in _INT_TEXT:
        kw[k] = None if kw[k] is None else int(kw[k])
    return JournalRow(**kw)


class NodeError(SourceError):
    """The node answered with a JSON-RPC error (``message``, revert ``data``): a refusal,
    not a transport failure. Raised and handled inside keeper.executors only."""

    def __init__(self, method: str, message: str, data: bytes):
        self.message, self.data = message, data
        super().__init__(f"{method} refused: {message}")


async def node_request(rpc: Rpc, method: str, params: list[Any]) -> Any:
    """Like ``Rpc.request`` but keeps the node's error message and data (revert bytes).

    Transport failures -> SourceError (the request may or may not have arrived);
    a JSON-RPC error -> NodeError (it arrived and was refused)."""
    try:
        response = await rpc.raw(method, params)  # failover; eth_sendRawTransaction to every endpoint
    except SourceError:
        raise
    except Exception as e:  # transport errors of any kind: wrap at the IO boundary
        raise SourceError(f"{method}: node unreachable or failed ({type(e).__name__})") from e
    if not isinstance(response, dict):
        raise SourceError(f"{method}: malformed response")
    err = answer_error(response)
    if err is not None:
        raise NodeError(method, *err)
    return response.get("result")


def answer_error(response: dict[str, Any]) -> tuple[str, bytes] | None:
    """A JSON-RPC answer's error as (message, revert data); None for a result."""
    err = response.get("error")
    if not err:
        return None
    message = str(err.get("message", err)) if isinstance(err, dict) else str(err)
    raw = err.get("data") if isinstance(err, dict) else None
    if isinstance(raw, dict):  # some nodes nest it: {"data": {"data": "0x..."}}
        raw = raw.get("data")
    return message, bytes.fromhex(raw[2:]) if isinstance(raw, str) and raw.startswith("0x") else b""


async def broadcast(rpc: Rpc, raw_tx: str) -> str | None:
    """eth_sendRawTransaction. None: accepted (or already known); else the node's refusal.
    Raises SourceError when it is unknown whether the node got it."""
    try:
        await node_request(rpc, "eth_sendRawTransaction", [raw_tx])
    except NodeError as e:
        if is_already_known(e.message):
            return None
        return e.message
    return None


def is_already_known(refusal: str) -> bool:
    return any(s in refusal.lower() for s in _ALREADY)


def is_nonce_too_low(refusal: str) -> bool:
    return any(s in refusal.lower() for s in _NONCE_LOW)


async def _receipt(rpc: Rpc, group: list[JournalRow], retries: int) -> dict[str, Any] | None:
    """The receipt of any row of ``group``. A node may commit a block's state before it
    serves its receipts (anvil does), so a used nonce gets a few more looks."""
    for i in range(retries):
        receipts = await rpc.batch([("eth_getTransactionReceipt", [r.hash]) for r in group])
        if found := next((rc for rc in receipts if rc), None):
            return found
        if i + 1 < retries:
            await asyncio.sleep(0.5)
    return None


class Journal:
    def __init__(self, store: Store):
        self.store = store
        with store.transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    # -- writes (each one committed before it returns) ------------------------------

    def record_signed(self, **kw: Any) -> JournalRow:
        """One signed transaction (keywords of :meth:`record_signed_many`), committed."""
        return self.record_signed_many([kw])[0]

    def record_signed_many(self, txs: list[dict[str, Any]]) -> list[JournalRow]:
        """Signed transactions in ONE committed write: each dict has ``action_key, sender,
        nonce, attempt, purpose, to, data, value, gas_limit, fees, max_cost_wei, signed``."""
        now, rows = time.time(), []
        cols = _COLUMNS[1:]
        with self.store.transaction() as db:
            for t in txs:
                fees, signed = t["fees"], t["signed"]
                row = JournalRow(0, signed.hash, t["action_key"], t["sender"], t["nonce"], t["attempt"],
                                 "signed", t["purpose"], t["to"], "0x" + t["data"].hex(), t["value"],
                                 t["gas_limit"], fees.max_fee_per_gas, fees.priority_fee_per_gas,
                                 t["max_cost_wei"], signed.raw, None, None, None, None, None, now, now)
                values = [str(getattr(row, c)) if c in _INT_TEXT and getattr(row, c) is not None
                          else getattr(row, c) for c in cols]
                cur = db.execute(f"INSERT INTO tx_journal ({', '.join(cols)})"
                                 f" VALUES ({', '.join('?' * len(cols))})", values)
                rows.append(replace(row, id=cur.lastrowid))
        return rows

    def mark(self, rows: JournalRow | Iterable[JournalRow], state: str, error: str | None = None,
             only_open: bool = False) -> None:
        if state not in OPEN + FINAL:
            raise ValueError(f"unknown journal state {state!r}")
        ids = [rows.id] if isinstance(rows, JournalRow) else [r.id for r in rows]
        where = " AND state IN ('signed', 'sent')" if only_open else ""
        with self.store.transaction() as db:
            db.executemany(
                f"UPDATE tx_journal SET state = ?, error = coalesce(?, error), updated_at = ?"
                f" WHERE id = ?{where}", [(state, error, time.time(), i) for i in ids])

    def record_receipt(self, group: list[JournalRow], receipt: dict[str, Any]) -> TxOutcome:
        """The receipt of one row of ``group`` (rows of one nonce): it is final, the others
        are replaced. Returns the outcome."""
        tx_hash = receipt["transactionHash"].lower()
        (winner,) = [r for r in group if r.hash.lower() == tx_hash]
        status = "mined" if int(receipt["status"], 16) == 1 else "reverted"
        gas_used = int(receipt["gasUsed"], 16)
        price = int(receipt.get("effectiveGasPrice") or hex(winner.max_fee_per_gas), 16)
        block = int(receipt["blockNumber"], 16)
        now = time.time()
        with self.store.transaction() as db:
            db.execute(
                "UPDATE tx_journal SET state = ?, block = ?, gas_used = ?, effective_gas_price = ?,"
                " cost_wei = ?, updated_at = ? WHERE id = ?",
                (status, block, gas_used, str(price), str(gas_used * price), now, winner.id))
            db.executemany(
                "UPDATE tx_journal SET state = 'replaced', updated_at = ?"
                " WHERE id = ? AND state IN ('signed', 'sent')",
                [(now, r.id) for r in group if r.id != winner.id])
        return TxOutcome(winner.action_key, status, winner.hash, winner.nonce, block, gas_used,
                         price, gas_used * price, winner.gas_limit, winner.max_fee_per_gas,
                         tuple(receipt.get("logs") or ()))

    # -- reads ------------------------------------------------------------------------

    def rows(self, action_key: str | None = None) -> list[JournalRow]:
        if action_key is None:
            return [_row(r) for r in self.store.query(f"{_SELECT} ORDER BY id")]
        sql = f"{_SELECT} WHERE action_key = ? ORDER BY id"
        return [_row(r) for r in self.store.query(sql, (action_key,))]

    def group(self, sender: str, nonce: int) -> list[JournalRow]:
        """The live rows of one nonce (attempts in order); failed/dropped ones left out."""
        sql = (f"{_SELECT} WHERE sender = ? AND nonce = ?"
               " AND state NOT IN ('failed', 'dropped') ORDER BY attempt, id")
        return [_row(r) for r in self.store.query(sql, (sender, nonce))]

    def open_groups(self) -> list[list[JournalRow]]:
        keys = self.store.query("SELECT DISTINCT sender, nonce FROM tx_journal"
                                " WHERE state IN ('signed', 'sent') ORDER BY sender, nonce")
        return [self.group(s, n) for s, n in keys]

    def already_done(self, action_key: str) -> bool:
        """True once a tx for ``action_key`` was signed (and maybe sent, mined, reverted)."""
        rows = self.store.query("SELECT 1 FROM tx_journal WHERE action_key = ? AND state IN"
                                " ('signed', 'sent', 'mined', 'reverted') LIMIT 1", (action_key,))
        return bool(rows)

    def spent_in_day(self, now: float | None = None) -> int:
        """Wei spent by txs final in the last 24 h (gas + value of mined ones), plus the
        worst case of each nonce still in flight."""
        since = (time.time() if now is None else now) - DAY_S
        sql = (f"{_SELECT} WHERE (state IN ('mined', 'reverted') AND updated_at >= ?)"
               " OR state IN ('signed', 'sent')")
        spent, in_flight = 0, {}
        for row in map(_row, self.store.query(sql, (since,))):
            if row.state in OPEN:
                key = (row.sender, row.nonce)
                in_flight[key] = max(in_flight.get(key, 0), row.worst_cost)
            else:
                spent += (row.cost_wei or 0) + (row.value if row.state == "mined" else 0)
        return spent + sum(in_flight.values())

    # -- start-up ---------------------------------------------------------------------

    async def reconcile(self, rpc: Rpc) -> tuple[list[TxOutcome], list[list[JournalRow]]]:
        """Settle every open row against the chain (see the module docstring).

        Returns (outcomes of the rows found mined, groups still pending: the caller waits
        for those, e.g. ``TxManager.reconcile``). Nothing is ever signed anew here."""
        log = structlog.get_logger()
        outcomes, pending = [], []
        for group in self.open_groups():
            first = group[0]
            ctx = {"action_key": first.action_key, "purpose": first.purpose,
                   "sender": first.sender, "nonce": first.nonce, "reconcile": True}
            count = int(await rpc.request("eth_getTransactionCount", [first.sender, "latest"]), 16)
            found = await _receipt(rpc, group, retries=3 if count > first.nonce else 1)
            if found is not None:
                out = self.record_receipt(group, found)
                outcomes.append(out)
                log.info(f"tx.{out.status}", **ctx, tx_hash=out.hash, block=out.block,
                         gas_used=out.gas_used, cost_wei=out.cost_wei)
            elif count > first.nonce:
                why = f"nonce {first.nonce} was used by another transaction"
                self.mark(group, "dropped", why, only_open=True)
                log.warning("tx.dropped", **ctx, reason=why)
            else:
                seen = await rpc.batch([("eth_getTransactionByHash", [r.hash]) for r in group])
                if any(seen):
                    self.mark([r for r, s in zip(group, seen, strict=True) if s], "sent",
                              only_open=True)
                    log.info("tx.pending", **ctx, reason="still in the mempool")
                else:
                    newest = group[-1]
                    refusal = await broadcast(rpc, newest.raw_tx)
                    if refusal is None:
                        self.mark(newest, "sent", only_open=True)
                    log.info("tx.rebroadcast", **ctx, tx_hash=newest.hash,
                             reason=refusal or "journaled but never seen by the node: same raw tx")
                pending.append(self.group(first.sender, first.nonce))
        return outcomes, pending
