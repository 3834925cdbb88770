"""Config of the notification channels: ``[[notify]]`` tables and the ``[notify_rules]`` defaults.

The main :class:`keeper.config.Config` hangs these in as::

    notify: NotifyChannels = ()                     # [[notify]], named and checked
    notify_rules: NotifyRules = NotifyRules()       # [notify_rules], optional

Secrets are never in the file: a channel names the environment variables that hold
them (``secret_env``, ``token_env``, ``password_env``, ``url_env`` for Slack/Discord
webhook URLs, which carry their own token), and :func:`resolve_secrets` reads them from
the mapping that ``keeper.config`` passes in (that module alone reads ``os.environ``).

This module must not import ``keeper.config`` (which imports it); it builds on
``keeper.config_types`` like the other component configs, so ``keeper.config``'s error
explainer shows its messages unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from keeper.config_types import PositiveInt, Seconds, Secret, _address, _fail, _Model, config_path
from keeper.errors import ConfigError
from keeper.model import Status
from keeper.notify.policy import Rule

ALERT_STATUSES = (Status.WATCH, Status.AT_RISK, Status.LIQUIDATABLE)
TELEGRAM_API = "https://api.telegram.org"


def _http_url(value: Any) -> str:
    if not isinstance(value, str):
        raise _fail("must be a string URL")
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise _fail("not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _fail("must be an http:// or https:// URL with a host")  # the value may be secret
    return value.strip()


def _env_name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", value):
        # not quoted: a secret pasted here by mistake must not reach the error message
        raise _fail('must be the NAME of an environment variable (e.g. "KEEPER_WEBHOOK_SECRET")')
    return value


def _accounts(value: Any) -> Any:
    if value == "all" or value is None:
        return value
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise _fail(f'must be "all" or a list of addresses, got {value!r}')
    out = [_address(item) for item in value]
    if not out:
        raise _fail('must not be empty (use "all" for every account)')
    return tuple(out)


def _statuses(value: Any) -> Any:
    if value is None:
        return None
    allowed = [s.value for s in ALERT_STATUSES]
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise _fail(f"must be a non-empty list of {allowed}, got {value!r}")
    for item in value:
        if item not in allowed:
            raise _fail(f"unknown status {item!r} (expected some of {allowed})")
    return frozenset(Status(v) for v in value)


EnvName = Annotated[str, BeforeValidator(_env_name)]
HttpUrl = Annotated[str, BeforeValidator(_http_url)]
Accounts = Annotated[Literal["all"] | tuple[str, ...] | None, BeforeValidator(_accounts)]
Statuses = Annotated[frozenset[Status] | None, BeforeValidator(_statuses)]
Names = tuple[Annotated[str, Field(min_length=1)], ...]


class NotifyRules(_Model):
    """``[notify_rules]``: defaults for the rule keys of every ``[[notify]]`` channel."""

    accounts: Accounts = "all"
    statuses: Statuses = frozenset(ALERT_STATUSES)
    cooldown_s: Annotated[int, Field(strict=True, ge=0)] = 3600
    protocols: Names | None = None  # None: every protocol
    markets: Names | None = None  # None: every market (by [[markets]] name)
    actions: bool = True  # executor-driven alerts (top-up, liquidation)


class ChannelBase(_Model):
    name: str = Field(default="", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    # rule keys: None inherits [notify_rules]
    accounts: Accounts = None
    statuses: Statuses = None
    cooldown_s: Annotated[int, Field(strict=True, ge=0)] | None = None
    protocols: Names | None = None
    markets: Names | None = None
    actions: bool | None = None
    # delivery
    timeout_s: Seconds = 10.0
    max_attempts: PositiveInt = 10
    backoff_s: Seconds = 1.0  # first retry after this, then doubling ...
    backoff_max_s: Seconds = 300.0  # ... up to this

    def secret_envs(self) -> dict[str, str]:
        """Secret role -> name of the environment variable that holds it."""
        names = {role: getattr(self, f"{role}_env", None) for role in _ROLES}
        return {role: env for role, env in names.items() if env}


_ROLES = ("url", "secret", "token", "password")


class _UrlChannel(ChannelBase):
    """A channel whose whole URL may be a secret: give ``url`` or ``url_env``, not both."""

    url: HttpUrl | None = None
    url_env: EnvName | None = None

    @model_validator(mode="after")
    def _one_url(self) -> _UrlChannel:
        if (self.url is None) == (self.url_env is None):
            raise _fail("give exactly one of url and url_env", field="url")
        return self


class WebhookChannel(_UrlChannel):
    kind: Literal["webhook"]
    secret_env: EnvName | None = None  # HMAC-SHA256 key for X-Keeper-Signature


class SlackChannel(_UrlChannel):
    kind: Literal["slack"]


class DiscordChannel(_UrlChannel):
    kind: Literal["discord"]


class TelegramChannel(ChannelBase):
    kind: Literal["telegram"]
    base_url: HttpUrl = TELEGRAM_API
    chat_id: Annotated[str, Field(min_length=1)] | int
    token_env: EnvName = "KEEPER_TELEGRAM_TOKEN"


class EmailChannel(ChannelBase):
    kind: Literal["email"]
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(strict=True, gt=0, lt=65536)] = 587
    starttls: bool = True  # never falls back to plain text when the server lacks it
    ca_file: Path | None = None  # a private CA for the SMTP server's certificate
    from_addr: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]
    to: tuple[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")], ...] = Field(min_length=1)
    username: str | None = None
    password_env: EnvName | None = None

    @field_validator("ca_file", mode="before")
    @classmethod
    def _relative_to_config(cls, value: Any, info: ValidationInfo) -> Any:
        return None if value is None else config_path(value, info)

    @model_validator(mode="after")
    def _auth_pair(self) -> EmailChannel:
        if (self.username is None) != (self.password_env is None):
            raise _fail("username and password_env go together", field="password_env")
        return self


NotifyChannelConfig = Annotated[
    Union[WebhookChannel, SlackChannel, DiscordChannel, TelegramChannel, EmailChannel],  # noqa: UP007
    Field(discriminator="kind"),
]
CHANNEL_MODELS: dict[str, type[ChannelBase]] = {
    "webhook": WebhookChannel, "slack": SlackChannel, "discord": DiscordChannel,
    "telegram": TelegramChannel, "email": EmailChannel,
}  # fmt: skip


def _name_channels(data: Any) -> Any:
    """Unnamed channels get ``<kind>-<index>`` (``webhook-0``)."""
    if not isinstance(data, list | tuple):
        return data
    return [
        {**c, "name": f"{c.get('kind')}-{i}"} if isinstance(c, dict) and "name" not in c else c
        for i, c in enumerate(data)
    ]


def _unique_names(channels: tuple[ChannelBase, ...]) -> tuple[ChannelBase, ...]:
    seen: dict[str, int] = {}
    for i, ch in enumerate(channels):
        if ch.name in seen:
            raise _fail(f"duplicate channel name {ch.name!r} (also notify[{seen[ch.name]}].name)")
        seen[ch.name] = i
    return channels


NotifyChannels = Annotated[
    tuple[NotifyChannelConfig, ...],
    BeforeValidator(_name_channels),
    AfterValidator(_unique_names),
]


@dataclass(frozen=True, slots=True)
class ChannelSecrets:
    """The secrets of one channel, read from the environment. ``str``/``repr`` hide them."""

    url: Secret | None = None  # Slack/Discord/webhook URL from url_env
    secret: Secret | None = None  # webhook HMAC key
    token: Secret | None = None  # Telegram bot token
    password: Secret | None = None  # SMTP password

    def reveal_all(self) -> list[str]:
        """Every value, for ``keeper.log.register_secret``."""
        found = (self.url, self.secret, self.token, self.password)
        return [s.reveal() for s in found if s is not None]


def resolve_secrets(
    channels: Sequence[ChannelBase], env: Mapping[str, str]
) -> dict[str, ChannelSecrets]:
    """Channel name -> its secrets from ``env``. A missing or empty variable is a ConfigError
    naming the key (``notify[0].secret_env``) and the variable."""
    out: dict[str, ChannelSecrets] = {}
    for i, ch in enumerate(channels):
        found: dict[str, Secret] = {}
        for role, name in ch.secret_envs().items():
            value = env.get(name, "").strip()
            if not value:
                raise ConfigError(
                    f"environment variable {name} is not set (channel {ch.name!r} needs it)",
                    path="environment", key=f"notify[{i}].{role}_env",
                )
            if role == "url":
                try:
                    _http_url(value)
                except PydanticCustomError:
                    raise ConfigError(f"environment variable {name} must be an http(s) URL",
                                      path="environment", key=f"notify[{i}].url_env") from None
            found[role] = Secret(value)
        out[ch.name] = ChannelSecrets(**found)
    return out


def rule_for(channel: ChannelBase, defaults: NotifyRules | None = None) -> Rule:
    """The effective rule of one channel: its own rule keys, else ``[notify_rules]``."""
    d = defaults or NotifyRules()

    def pick(name: str) -> Any:
        own = getattr(channel, name)
        return getattr(d, name) if own is None else own

    accounts, protocols, markets = pick("accounts"), pick("protocols"), pick("markets")
    return Rule(
        statuses=frozenset(pick("statuses")),
        cooldown_s=pick("cooldown_s"),
        accounts=None if accounts == "all" else frozenset(a.lower() for a in accounts),
        protocols=None if protocols is None else frozenset(protocols),
        markets=None if markets is None else frozenset(markets),
        actions=pick("actions"),
    )
