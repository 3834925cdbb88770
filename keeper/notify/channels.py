"""Notifiers: one per channel kind, each ``async def send(alert) -> None`` or NotificationError.

The only code of keeper.notify that does network IO. HTTP channels share one
``httpx.AsyncClient`` (the seam: tests point every channel at a loopback server);
email is stdlib ``smtplib`` in a worker thread (``asyncio.to_thread``), STARTTLS by
default and never a silent fall-back to plain text.

Notifiers do not log: they raise :class:`NotificationError` with a message that names
no URL (a Telegram URL carries the bot token; Slack/Discord URLs are tokens), and the
dispatcher logs the outcome once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Protocol

import httpx

from keeper.errors import NotificationError
from keeper.log import scrub
from keeper.notify.config import (
    ChannelBase,
    ChannelSecrets,
    EmailChannel,
    TelegramChannel,
    WebhookChannel,
)
from keeper.notify.message import format_amount, format_hf, render
from keeper.notify.policy import Alert

SIGNATURE_HEADER = "X-Keeper-Signature"
ALERT_ID_HEADER = "X-Keeper-Alert-Id"
_DISCORD_MAX, _TELEGRAM_MAX, _SLACK_MAX = 2000, 4096, 3000


class Notifier(Protocol):
    name: str
    kind: str

    async def send(self, alert: Alert) -> None:
        """Deliver ``alert`` or raise NotificationError."""
        ...


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error(name: str, what: str) -> NotificationError:
    return NotificationError(scrub(f"{name}: {what}"))


def alert_payload(alert: Alert) -> dict[str, Any]:
    """The generic webhook body. Raw big ints as decimal strings (JSON readers lose
    precision past 2**53); people-formatted values beside them; ``text`` as the message."""
    return {
        "id": alert.key,
        "kind": alert.kind,
        "market": alert.market,
        "protocol": alert.protocol,
        "account": alert.account,
        "status": alert.status.value,
        "previous": alert.previous.value if alert.previous else None,
        "health_factor_wad": None if alert.health_factor_wad is None else str(alert.health_factor_wad),
        "health_factor": format_hf(alert.health_factor_wad),
        "collateral_base": str(alert.collateral_base),
        "debt_base": str(alert.debt_base),
        "collateral_usd": format_amount(alert, alert.collateral_base),  # in base_unit
        "debt_usd": format_amount(alert, alert.debt_base),
        "base_unit": alert.base_unit,
        "base_decimals": alert.base_decimals,
        "drop_to_liquidation_bps": alert.drop_to_liquidation_bps,
        "main_collateral": alert.main_collateral,
        "reliable": alert.reliable,
        "block": alert.block,
        "action": alert.action,
        "created_at": alert.created_at,
        "text": render(alert).text,
    }


def sign(secret: bytes, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the raw body>``: the X-Keeper-Signature value."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class _HttpNotifier:
    kind = "http"

    def __init__(self, name: str, url: str, client: httpx.AsyncClient, timeout_s: float):
        self.name = name
        self._url = url  # may be a secret: never in a message or a log line
        self._client = client
        self._timeout = timeout_s

    async def _post(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        try:
            response = await self._client.post(
                self._url,
                content=body,
                headers={"Content-Type": "application/json", **(headers or {})},
                timeout=self._timeout,
            )
        except httpx.HTTPError as e:  # the message of an httpx error can quote the URL: drop it
            raise _error(self.name, f"{type(e).__name__}: {_no_url(str(e), self._url)}") from None
        if not response.is_success:
            snippet = response.text[:200].replace("\n", " ")
            raise _error(self.name, f"HTTP {response.status_code} {snippet}".rstrip())
        return response

    @staticmethod
    def _json(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _no_url(text: str, url: str) -> str:
    return text.replace(url, "<url>") if url else text


class WebhookNotifier(_HttpNotifier):
    """POST the alert as JSON; ``X-Keeper-Signature: sha256=<hmac>`` when a secret is set."""

    kind = "webhook"

    def __init__(self, name: str, url: str, client: httpx.AsyncClient, timeout_s: float,
                 secret: bytes | None = None):
        super().__init__(name, url, client, timeout_s)
        self._secret = secret

    async def send(self, alert: Alert) -> None:
        body = self._json(alert_payload(alert))
        headers = {ALERT_ID_HEADER: alert.key}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        await self._post(body, headers)


class SlackNotifier(_HttpNotifier):
    """Slack incoming webhook: ``{"text": ...}``."""

    kind = "slack"

    async def send(self, alert: Alert) -> None:
        await self._post(self._json({"text": _clip(render(alert).text, _SLACK_MAX)}))


class DiscordNotifier(_HttpNotifier):
    """Discord webhook: ``{"content": ...}`` (2000 characters at most)."""

    kind = "discord"

    async def send(self, alert: Alert) -> None:
        await self._post(self._json({"content": _clip(render(alert).text, _DISCORD_MAX)}))


class TelegramNotifier(_HttpNotifier):
    """Telegram bot API: ``POST {base_url}/bot<token>/sendMessage`` with chat_id and text."""

    kind = "telegram"

    def __init__(self, name: str, base_url: str, token: str, chat_id: str | int,
                 client: httpx.AsyncClient, timeout_s: float):
        super().__init__(name, f"{base_url.rstrip('/')}/bot{token}/sendMessage", client, timeout_s)
        self._chat_id = chat_id

    async def send(self, alert: Alert) -> None:
        text = _clip(render(alert).text, _TELEGRAM_MAX)
        body = {"chat_id": self._chat_id, "text": text, "disable_web_page_preview": True}
        response = await self._post(self._json(body))
        try:
            ok = response.json().get("ok") is True
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise _error(self.name, f"Telegram did not accept the message: {response.text[:200]}")


class EmailNotifier:
    """SMTP with STARTTLS (stdlib smtplib in a thread). Refuses to send in clear text when
    ``starttls`` is set and the server does not offer it."""

    kind = "email"

    def __init__(self, name: str, host: str, port: int, from_addr: str, to: tuple[str, ...],
                 *, starttls: bool = True, username: str | None = None,
                 password: str | None = None, ssl_context: ssl.SSLContext | None = None,
                 timeout_s: float = 10.0):
        self.name = name
        self._host, self._port = host, port
        self._from, self._to = from_addr, tuple(to)
        self._starttls = starttls
        self._username, self._password = username, password
        self._ssl = ssl_context or ssl.create_default_context()
        self._timeout = timeout_s

    def message(self, alert: Alert) -> EmailMessage:
        rendered = render(alert)
        msg = EmailMessage()
        msg["Subject"] = rendered.subject
        msg["From"] = self._from
        msg["To"] = ", ".join(self._to)
        msg["Date"] = formatdate(alert.created_at, usegmt=True)
        # the same alert always has the same Message-ID: a mail system may drop a re-send
        msg["Message-ID"] = f"<{hashlib.sha256(alert.key.encode()).hexdigest()[:32]}@keeper>"
        msg.set_content(rendered.text)
        return msg

    async def send(self, alert: Alert) -> None:
        await asyncio.to_thread(self._send_blocking, self.message(alert))

    def _send_blocking(self, msg: EmailMessage) -> None:
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                smtp.ehlo()
                if self._starttls:
                    smtp.starttls(context=self._ssl)  # SMTPNotSupportedError if not offered
                    smtp.ehlo()
                if self._username is not None and self._password is not None:
                    smtp.login(self._username, self._password)
                smtp.send_message(msg, from_addr=self._from, to_addrs=list(self._to))
        except (smtplib.SMTPException, OSError) as e:  # ssl.SSLError is an OSError
            raise _error(self.name, f"{type(e).__name__}: {e}") from None


def build_notifier(channel: ChannelBase, secrets: ChannelSecrets, client: httpx.AsyncClient,
                   ssl_context: ssl.SSLContext | None = None) -> Notifier:
    """The notifier for one ``[[notify]]`` table (a factory from the config's ``kind``)."""
    reveal = lambda s: None if s is None else s.get_secret_value()
    timeout = channel.timeout_s
    if isinstance(channel, EmailChannel):
        if ssl_context is None:
            ssl_context = ssl.create_default_context(
                cafile=str(channel.ca_file) if channel.ca_file else None)
        return EmailNotifier(channel.name, channel.host, channel.port, channel.from_addr,
                             channel.to, starttls=channel.starttls, username=channel.username,
                             password=reveal(secrets.password), ssl_context=ssl_context,
                             timeout_s=timeout)
    if isinstance(channel, TelegramChannel):
        token = reveal(secrets.token)
        if token is None:
            raise NotificationError(f"{channel.name}: no bot token (resolve_secrets first)")
        return TelegramNotifier(channel.name, channel.base_url, token, channel.chat_id,
                                client, timeout)
    url = channel.url or reveal(secrets.url)  # type: ignore[attr-defined]
    if url is None:
        raise NotificationError(f"{channel.name}: no URL (resolve_secrets first)")
    if isinstance(channel, WebhookChannel):
        key = reveal(secrets.secret)
        return WebhookNotifier(channel.name, url, client, timeout,
                               None if key is None else key.encode())
    cls = {"slack": SlackNotifier, "discord": DiscordNotifier}[channel.kind]  # type: ignore[attr-defined]
    return cls(channel.name, url, client, timeout)
