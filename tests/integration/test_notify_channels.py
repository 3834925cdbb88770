"""Each channel against a real loopback server: payload shapes, HMAC, STARTTLS. No anvil."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import trustme
from aiosmtpd.controller import Controller

from keeper.config_types import Secret
from keeper.errors import NotificationError
from keeper.model import Status
from keeper.notify.channels import (
    DiscordNotifier,
    EmailNotifier,
    SlackNotifier,
    TelegramNotifier,
    WebhookNotifier,
    build_notifier,
)
from keeper.notify.config import ChannelSecrets, EmailChannel
from keeper.notify.message import render
from keeper.notify.policy import AlertState, Rule, decide
from tests.notify_servers import (
    ACCOUNT,
    HttpSink,
    SmtpServer,
    _Handler,
    free_port,
    make_position,
    start_controller,
)

RULE = Rule(frozenset({Status.WATCH, Status.AT_RISK, Status.LIQUIDATABLE}), 3600)
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


@pytest.fixture(autouse=True)
def _chain_snapshot():
    """These tests need no chain: replace the integration conftest's anvil snapshot."""
    yield


@pytest_asyncio.fixture(loop_scope="session")
async def sink() -> AsyncIterator[HttpSink]:
    server = HttpSink()
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def escalation():
    pos = make_position("liquidatable", hf_wad=987_600_000_000_000_000, block=77)
    alert, _ = decide(AlertState(Status.AT_RISK, 0, 70), pos, RULE, 1_700_000_000,
                      action="dry run: would top up")
    return alert


async def test_webhook_posts_json_signed_with_hmac(sink, client):
    alert = escalation()
    await WebhookNotifier("hook", sink.base_url + "/hook", client, 5, b"s3cret-key").send(alert)
    (req,) = sink.requests
    assert (req.method, req.path, req.headers["content-type"]) == ("POST", "/hook", "application/json")
    expected = "sha256=" + hmac.new(b"s3cret-key", req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req.headers["x-keeper-signature"], expected)
    assert req.headers["x-keeper-alert-id"] == alert.key
    body = json.loads(req.body)
    assert body["id"] == alert.key and body["kind"] == "escalated"
    assert (body["status"], body["previous"], body["account"]) == ("liquidatable", "at_risk", ACCOUNT)
    assert body["health_factor_wad"] == "987600000000000000" and body["health_factor"] == "0.9876"
    assert body["collateral_base"] == str(alert.collateral_base)
    assert body["collateral_usd"] == "$1,234,567.89" and body["drop_to_liquidation_bps"] == 475
    assert body["action"] == "dry run: would top up" and body["block"] == 77
    assert body["text"] == render(alert).text


async def test_webhook_without_secret_is_unsigned_and_a_wrong_key_does_not_verify(sink, client):
    await WebhookNotifier("hook", sink.base_url + "/hook", client, 5).send(escalation())
    await WebhookNotifier("hook", sink.base_url + "/hook", client, 5, b"other").send(escalation())
    unsigned, signed = sink.requests
    assert "x-keeper-signature" not in unsigned.headers
    wrong = "sha256=" + hmac.new(b"s3cret-key", signed.body, hashlib.sha256).hexdigest()
    assert signed.headers["x-keeper-signature"] != wrong


async def test_slack_and_discord_payloads(sink, client):
    alert = escalation()
    await SlackNotifier("slack", sink.base_url + "/services/T0/B0/x", client, 5).send(alert)
    await DiscordNotifier("discord", sink.base_url + "/api/webhooks/1/y", client, 5).send(alert)
    slack, discord = sink.requests
    assert json.loads(slack.body) == {"text": render(alert).text}
    assert json.loads(discord.body) == {"content": render(alert).text}


async def test_discord_text_is_clipped_to_its_limit(sink, client):
    pos = make_position("liquidatable")
    alert, _ = decide(None, pos, RULE, 0, action="x" * 5000)
    await DiscordNotifier("discord", sink.base_url + "/d", client, 5).send(alert)
    content = json.loads(sink.requests[0].body)["content"]
    assert len(content) == 2000 and content.endswith("…")


async def test_telegram_send_message(sink, client):
    alert = escalation()
    await TelegramNotifier("tg", sink.base_url, TOKEN, -1001234, client, 5).send(alert)
    (req,) = sink.requests
    assert req.path == f"/bot{TOKEN}/sendMessage"
    body = json.loads(req.body)
    assert body["chat_id"] == -1001234 and body["text"] == render(alert).text


async def test_telegram_refusal_is_an_error_without_the_token(sink, client):
    sink.telegram_ok = False
    with pytest.raises(NotificationError) as e:
        await TelegramNotifier("tg", sink.base_url, TOKEN, "@chan", client, 5).send(escalation())
    assert "tg: HTTP 400" in str(e.value) and "chat not found" in str(e.value)
    assert TOKEN not in str(e.value) and "/bot" not in str(e.value)


async def test_http_errors_become_notification_errors_without_the_url(sink, client):
    sink.fail_next(1)
    with pytest.raises(NotificationError, match="HTTP 500"):
        await SlackNotifier("slack", sink.base_url + "/s", client, 5).send(escalation())
    dead = f"http://127.0.0.1:{free_port()}/services/T0/B0/secretsecretsecret"
    with pytest.raises(NotificationError) as e:
        await SlackNotifier("slack", dead, client, 5).send(escalation())
    assert "ConnectError" in str(e.value) and "secretsecret" not in str(e.value)


async def test_email_over_starttls_with_login(ca, tmp_path: Path):
    alert = escalation()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with SmtpServer(ca, users={"keeper": "hunter2-pw"}) as smtp:
        channel = EmailChannel(kind="email", name="mail", host="127.0.0.1", port=smtp.port,
                               from_addr="keeper@example.org", ca_file=ca_file,
                               to=("ops@example.org", "cto@example.org"), username="keeper",
                               password_env="KEEPER_SMTP_PASSWORD")
        secrets = ChannelSecrets(password=Secret("hunter2-pw"))
        notifier = build_notifier(channel, secrets, client=None)  # type: ignore[arg-type]
        await notifier.send(alert)
        (got,) = smtp.received
    assert got.tls, "the message was sent before STARTTLS"
    assert got.login == "keeper"
    assert got.mail_from == "keeper@example.org"
    assert got.rcpt_tos == ["ops@example.org", "cto@example.org"]
    assert got.message["Subject"] == render(alert).subject
    assert got.message["To"] == "ops@example.org, cto@example.org"
    assert got.message.get_content().replace("\r\n", "\n").strip() == render(alert).text


async def test_email_wrong_password_and_untrusted_certificate_fail(ca):
    with SmtpServer(ca, users={"keeper": "right"}) as smtp:
        bad_pw = EmailNotifier("mail", "127.0.0.1", smtp.port, "k@example.org", ("o@example.org",),
                               username="keeper", password="wrong",
                               ssl_context=smtp.client_context(), timeout_s=5)
        with pytest.raises(NotificationError, match="SMTPAuthenticationError"):
            await (bad_pw.send(escalation()))
        untrusted = EmailNotifier("mail", "127.0.0.1", smtp.port, "k@example.org",
                                  ("o@example.org",), timeout_s=5)  # system CAs only
        with pytest.raises(NotificationError, match="SSLCertVerificationError"):
            await (untrusted.send(escalation()))
        # starttls = false against a server that requires it: refused, nothing delivered
        plain = EmailNotifier("mail", "127.0.0.1", smtp.port, "k@example.org",
                              ("o@example.org",), starttls=False, timeout_s=5)
        with pytest.raises(NotificationError):
            await (plain.send(escalation()))
        assert smtp.received == []


async def test_email_never_falls_back_to_plain_text():
    handler = _Handler()
    controller = start_controller(lambda p: Controller(handler, hostname="127.0.0.1", port=p))  # no STARTTLS
    port = controller.port
    try:
        notifier = EmailNotifier("mail", "127.0.0.1", port, "k@example.org", ("o@example.org",),
                                 timeout_s=5)
        with pytest.raises(NotificationError, match="STARTTLS"):
            await (notifier.send(escalation()))
        assert handler.received == []
    finally:
        controller.stop()


