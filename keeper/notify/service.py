"""The one object the runner holds: positions in -> alerts queued; a job -> alerts sent.

:meth:`Notifications.observe` is sync and does no network IO (policy + one SQLite
transaction), so the engine tick can call it inline; :meth:`Notifications.deliver_due`
does the sending and belongs in its own scheduler job.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping, Sequence

import httpx

from keeper.log import register_secret
from keeper.model import Position, Status
from keeper.notify.channels import Notifier, build_notifier
from keeper.notify.config import ChannelBase, ChannelSecrets, NotifyRules, rule_for
from keeper.notify.dispatcher import DeliveryReport, Dispatcher, RetryPolicy
from keeper.notify.outbox import Outbox, StateChange
from keeper.notify.policy import Alert, Rule, decide
from keeper.store import Store


class Notifications:
    def __init__(self, outbox: Outbox, rules: Mapping[str, Rule], dispatcher: Dispatcher,
                 client: httpx.AsyncClient | None = None):
        self.outbox = outbox
        self.rules = dict(rules)
        self.dispatcher = dispatcher
        self._client = client  # owned: closed by aclose()

    def observe(self, positions: Iterable[Position], now: int,
                actions: Mapping[tuple[str, str], str] | None = None) -> list[Alert]:
        """Run the policy for every position on every channel; queue the alerts and keep
        the new states (one transaction). Pass every Position a tick computed (safe ones
        too: that is how "recovered" and reminders happen). ``actions`` maps
        ``(market, account)`` to what the keeper did about it. Returns the new alerts."""
        changes: list[StateChange] = []
        for pos in positions:
            if pos.status is Status.SAFE and not self.outbox.has_state(pos.market, pos.account):
                continue  # nothing to recover from: the common case of a full scan
            action = actions.get((pos.market, pos.account)) if actions else None
            for channel, rule in self.rules.items():
                prev = self.outbox.state(pos.market, pos.account, channel)
                step = decide(prev, pos, rule, now, action)
                if step.alert is not None or step.state != prev:
                    changes.append(StateChange(channel, pos.market, pos.account, step))
        return self.outbox.record(changes, now)

    def would_alert(self, pos: Position, now: int) -> bool:
        """True when :meth:`observe` would alert on ``pos`` on some channel (no writes).
        The engine may use it to compute costly details (the price drop to liquidation)
        only for positions a person is about to read about."""
        if pos.status is Status.SAFE and not self.outbox.has_state(pos.market, pos.account):
            return False
        return any(
            decide(self.outbox.state(pos.market, pos.account, ch), pos, rule, now).alert
            is not None
            for ch, rule in self.rules.items()
        )

    def report(self, alert: Alert) -> bool:
        """Queue an executor-driven alert (:func:`keeper.notify.policy.action_alert`) for
        every channel whose rule covers it and takes actions. True when it is new."""
        channels = [name for name, rule in self.rules.items()
                    if rule.actions and rule.covers(alert.protocol, alert.market, alert.account)]
        return bool(channels) and self.outbox.enqueue(alert, channels)

    async def deliver_due(self, now: float) -> DeliveryReport:
        return await self.dispatcher.deliver_due(now)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def build_notifications(
    channels: Sequence[ChannelBase],
    secrets: Mapping[str, ChannelSecrets],
    store: Store,
    defaults: NotifyRules | None = None,
    *,
    client: httpx.AsyncClient | None = None,
    ssl_context: ssl.SSLContext | None = None,
    notifiers: Mapping[str, Notifier] | None = None,
    concurrency: int = 4,
) -> Notifications:
    """Everything from the config: registers every channel secret (and URL) for log
    redaction, builds one notifier per channel over one shared httpx client (created
    here unless given; closed by ``aclose`` only when created here), and the outbox
    on ``store``. ``notifiers`` replaces built ones by channel name (tests, dry runs)."""
    for ch in channels:
        for value in secrets.get(ch.name, ChannelSecrets()).reveal_all():
            register_secret(value)
        register_secret(getattr(ch, "url", None))
    owned = client is None
    http = client or httpx.AsyncClient(follow_redirects=False)
    built: dict[str, Notifier] = {}
    for ch in channels:
        if notifiers and ch.name in notifiers:
            built[ch.name] = notifiers[ch.name]
        else:
            built[ch.name] = build_notifier(ch, secrets.get(ch.name, ChannelSecrets()), http,
                                            ssl_context)
    retry = {ch.name: RetryPolicy(ch.timeout_s, ch.max_attempts, ch.backoff_s, ch.backoff_max_s)
             for ch in channels}
    outbox = Outbox(store)
    dispatcher = Dispatcher(outbox, built, retry, concurrency=concurrency)
    rules = {ch.name: rule_for(ch, defaults) for ch in channels}
    return Notifications(outbox, rules, dispatcher, http if owned else None)
