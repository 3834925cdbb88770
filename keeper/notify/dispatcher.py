"""Send what is due: per channel concurrently, with a timeout per request, retry with backoff.

:meth:`Dispatcher.deliver_due` is called from its own scheduler job, never from the
engine tick, so a slow or dead channel never delays a health check. Within one call:

* every channel runs at the same time; within a channel, the alerts of one position go
  out one after the other, oldest first, and different positions in parallel (at most
  ``concurrency`` requests per channel at once);
* a failure defers the rest of that position's alerts on that channel to the next call
  (they are not counted as attempts), so a dead endpoint costs one timeout per position;
* a failed attempt is retried after ``backoff_s * 2**(attempts-1)``, capped at
  ``backoff_max_s``; after ``max_attempts`` the delivery is marked failed.

One log line per outcome: ``alert.sent`` (info), ``alert.retry`` (warning),
``alert.failed`` (error, once). Lines carry the channel name, never its URL.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from keeper.errors import NotificationError
from keeper.log import scrub
from keeper.notify.channels import Notifier
from keeper.notify.outbox import Delivery, Outbox

log = structlog.get_logger("keeper.notify")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    timeout_s: float = 10.0
    max_attempts: int = 10
    backoff_s: float = 1.0
    backoff_max_s: float = 300.0

    def delay(self, attempts: int) -> float:
        """Wait before the next attempt, after ``attempts`` failed ones (1, 2, 4 ... capped)."""
        return min(self.backoff_s * 2 ** max(attempts - 1, 0), self.backoff_max_s)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0  # not tried this call: an earlier alert of the position just failed
    skipped: bool = False  # another deliver_due was still running


class Dispatcher:
    def __init__(self, outbox: Outbox, notifiers: Mapping[str, Notifier],
                 retry: Mapping[str, RetryPolicy] | None = None, *, concurrency: int = 4,
                 batch: int = 1000):
        self.outbox = outbox
        self.notifiers = dict(notifiers)
        self.retry = {name: (retry or {}).get(name, RetryPolicy()) for name in self.notifiers}
        self.concurrency = concurrency
        self.batch = batch
        self._lock = asyncio.Lock()

    async def deliver_due(self, now: float) -> DeliveryReport:
        """Try every delivery due at ``now`` (unix seconds). Raises nothing a channel causes."""
        if self._lock.locked():
            return DeliveryReport(skipped=True)
        async with self._lock:
            due = self.outbox.due(now, self.batch)
            queues: dict[str, dict[tuple[str, str], list[Delivery]]] = defaultdict(
                lambda: defaultdict(list))
            for d in due:
                queues[d.channel][(d.alert.market, d.alert.account)].append(d)
            counts: dict[str, int] = defaultdict(int)
            await asyncio.gather(*(self._channel(name, groups, now, counts)
                                   for name, groups in queues.items()))
            return DeliveryReport(counts["sent"], counts["retry"], counts["failed"],
                                  counts["deferred"])

    async def _channel(self, name: str, groups: Mapping[tuple[str, str], list[Delivery]],
                       now: float, counts: dict[str, int]) -> None:
        notifier = self.notifiers.get(name)
        if notifier is None:  # the channel was removed from the config since it was queued
            for d in (d for g in groups.values() for d in g):
                self.outbox.mark_failed(d.alert.key, name, d.attempts, now,
                                        "channel is no longer configured")
                self._log("alert.failed", d, d.attempts, error="channel is no longer configured")
                counts["failed"] += 1
            return
        sem = asyncio.Semaphore(self.concurrency)

        async def run(group: list[Delivery]) -> None:
            async with sem:
                for i, d in enumerate(group):
                    outcome = await self._one(notifier, d, now)
                    counts[outcome] += 1
                    if outcome != "sent":
                        counts["deferred"] += len(group) - i - 1
                        return

        await asyncio.gather(*(run(g) for g in groups.values()))

    async def _one(self, notifier: Notifier, d: Delivery, now: float) -> str:
        policy = self.retry[d.channel]
        attempts = d.attempts + 1
        bug: BaseException | None = None
        try:
            async with asyncio.timeout(policy.timeout_s):
                await notifier.send(d.alert)
        except NotificationError as e:
            error = str(e)
        except TimeoutError:
            error = f"{d.channel}: no answer within {policy.timeout_s:g}s"
        except Exception as e:  # noqa: BLE001  a bug in one notifier must not stop the others;
            # it is not hidden: a failed attempt, logged with its traceback
            error, bug = scrub(f"{d.channel}: unexpected {type(e).__name__}: {e}"), e
        else:
            self.outbox.mark_sent(d.alert.key, d.channel, attempts, now)
            self._log("alert.sent", d, attempts)
            return "sent"
        if attempts >= policy.max_attempts:
            self.outbox.mark_failed(d.alert.key, d.channel, attempts, now, error)
            self._log("alert.failed", d, attempts, error=error, exc_info=bug)
            return "failed"
        wait = policy.delay(attempts)
        self.outbox.mark_retry(d.alert.key, d.channel, attempts, now + wait, error)
        self._log("alert.retry", d, attempts, error=error, retry_in_s=wait, exc_info=bug)
        return "retry"

    def _log(self, event: str, d: Delivery, attempts: int, **extra: object) -> None:
        if extra.get("exc_info", False) is None:
            del extra["exc_info"]
        level = {"alert.sent": log.info, "alert.retry": log.warning}.get(event, log.error)
        notifier = self.notifiers.get(d.channel)
        level(event, channel=d.channel, channel_kind=getattr(notifier, "kind", None),
              alert=d.alert.key, alert_kind=d.alert.kind, market=d.alert.market,
              account=d.alert.account, status=d.alert.status.value, attempts=attempts, **extra)
