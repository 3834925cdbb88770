"""Alerts for people: positions that go bad, and what the keeper did about them.

Data flow (each module small, one job)::

    Position ──policy.decide (pure)──> Alert ──outbox (SQLite)──> dispatcher ──channels──> people
                 config: rules,          alerts, deliveries,       retry, backoff,   webhook, slack,
                 channels, secrets       alert_state                one log line      discord, telegram,
                                                                    per outcome       email
    executors ──policy.action_alert──> Alert ──┘

:class:`~keeper.notify.service.Notifications` (made by :func:`build_notifications`) is
the one object the runner holds.
"""

from keeper.notify.channels import Notifier
from keeper.notify.config import (
    CHANNEL_MODELS,
    ChannelSecrets,
    NotifyChannelConfig,
    NotifyChannels,
    NotifyRules,
    resolve_secrets,
    rule_for,
)
from keeper.notify.dispatcher import DeliveryReport, Dispatcher, RetryPolicy
from keeper.notify.message import Message, render
from keeper.notify.outbox import Outbox
from keeper.notify.policy import Alert, AlertState, Rule, action_alert, decide
from keeper.notify.service import Notifications, build_notifications

__all__ = [
    "CHANNEL_MODELS", "Alert", "AlertState", "ChannelSecrets", "DeliveryReport", "Dispatcher",
    "Message", "Notifications", "Notifier", "NotifyChannelConfig", "NotifyChannels",
    "NotifyRules", "Outbox", "RetryPolicy", "Rule", "action_alert", "build_notifications",
    "decide", "render", "resolve_secrets", "rule_for",
]  # fmt: skip
