"""keeper.notify.config: [[notify]] tables, rules, and secrets from the environment only."""

from __future__ import annotations

import tomllib
from decimal import Decimal

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from keeper.errors import ConfigError
from keeper.model import Status
from keeper.notify.config import (
    TELEGRAM_API,
    EmailChannel,
    NotifyChannels,
    NotifyRules,
    TelegramChannel,
    WebhookChannel,
    resolve_secrets,
    rule_for,
)


class Root(BaseModel):
    """How the main Config hangs the notify keys in."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    notify: NotifyChannels = ()
    notify_rules: NotifyRules = NotifyRules()


def load(text: str) -> Root:
    return Root.model_validate(tomllib.loads(text, parse_float=Decimal))


def errors(text: str) -> list[tuple[tuple, str, str]]:
    with pytest.raises(ValidationError) as e:
        load(text)
    return [(tuple(x["loc"]), x["type"], x["msg"]) for x in e.value.errors()]


def test_minimal_webhook():
    cfg = load('[[notify]]\nkind = "webhook"\nurl = "http://127.0.0.1:9000/hook"\n')
    (ch,) = cfg.notify
    assert isinstance(ch, WebhookChannel)
    assert (ch.name, ch.url, ch.secret_env) == ("webhook-0", "http://127.0.0.1:9000/hook", None)
    rule = rule_for(ch, cfg.notify_rules)
    assert rule.statuses == {Status.WATCH, Status.AT_RISK, Status.LIQUIDATABLE}
    assert (rule.cooldown_s, rule.accounts, rule.protocols, rule.actions) == (3600, None, None, True)
    assert resolve_secrets(cfg.notify, {})["webhook-0"].reveal_all() == []


def test_every_kind_with_rules_and_defaults():
    cfg = load('''
[notify_rules]
cooldown_s = 900
statuses = ["at_risk", "liquidatable"]

[[notify]]
kind = "slack"
url_env = "KEEPER_SLACK_URL"
accounts = ["0x00000000000000000000000000000000000000a1"]

[[notify]]
kind = "discord"
name = "ops-discord"
url = "https://discord.example/api/webhooks/1/abc"
statuses = ["liquidatable"]
cooldown_s = 60
protocols = ["aave_v3"]

[[notify]]
kind = "telegram"
chat_id = -1001234

[[notify]]
kind = "email"
host = "smtp.example.org"
from_addr = "keeper@example.org"
to = ["ops@example.org", "cto@example.org"]
username = "keeper"
password_env = "KEEPER_SMTP_PASSWORD"
timeout_s = 2.5
''')
    slack, discord, telegram, email = cfg.notify
    assert [c.name for c in cfg.notify] == ["slack-0", "ops-discord", "telegram-2", "email-3"]
    r = rule_for(slack, cfg.notify_rules)
    assert r.statuses == {Status.AT_RISK, Status.LIQUIDATABLE} and r.cooldown_s == 900
    assert r.accounts == {"0x00000000000000000000000000000000000000a1"}
    r = rule_for(discord, cfg.notify_rules)
    assert (r.statuses, r.cooldown_s, r.protocols) == ({Status.LIQUIDATABLE}, 60, {"aave_v3"})
    assert isinstance(telegram, TelegramChannel) and telegram.base_url == TELEGRAM_API
    assert telegram.token_env == "KEEPER_TELEGRAM_TOKEN" and telegram.chat_id == -1001234
    assert isinstance(email, EmailChannel)
    assert (email.port, email.starttls, email.to, email.timeout_s) == (
        587, True, ("ops@example.org", "cto@example.org"), 2.5)

    env = {"KEEPER_SLACK_URL": "https://hooks.slack.com/services/T0/B0/xyzSECRETxyz123456",
           "KEEPER_TELEGRAM_TOKEN": "123456:ABCdefGHIjklMNOpqr", "KEEPER_SMTP_PASSWORD": "hunter22"}
    secrets = resolve_secrets(cfg.notify, env)
    assert secrets["slack-0"].url.get_secret_value() == env["KEEPER_SLACK_URL"]
    assert secrets["telegram-2"].token.get_secret_value() == env["KEEPER_TELEGRAM_TOKEN"]
    assert secrets["email-3"].password.get_secret_value() == "hunter22"
    assert secrets["ops-discord"].reveal_all() == []
    assert "hunter22" not in repr(secrets) and "ABCdef" not in str(secrets)


def test_missing_env_var_is_a_config_error_naming_the_key():
    cfg = load('[[notify]]\nkind = "webhook"\nurl = "http://127.0.0.1:1/h"\n'
               'secret_env = "KEEPER_WEBHOOK_SECRET"\n')
    with pytest.raises(ConfigError) as e:
        resolve_secrets(cfg.notify, {"OTHER": "x"})
    assert e.value.key == "notify[0].secret_env"
    assert "KEEPER_WEBHOOK_SECRET" in str(e.value)
    with pytest.raises(ConfigError):
        resolve_secrets(cfg.notify, {"KEEPER_WEBHOOK_SECRET": "  "})  # empty is missing too
    ok = resolve_secrets(cfg.notify, {"KEEPER_WEBHOOK_SECRET": "s3cret-value"})
    assert ok["webhook-0"].secret.get_secret_value() == "s3cret-value"


def test_url_from_env_must_be_a_url():
    cfg = load('[[notify]]\nkind = "slack"\nurl_env = "SLACK"\n')
    with pytest.raises(ConfigError) as e:
        resolve_secrets(cfg.notify, {"SLACK": "not a url"})
    assert e.value.key == "notify[0].url_env" and "not a url" not in str(e.value)


@pytest.mark.parametrize(("text", "loc", "words"), [
    ('[[notify]]\nkind = "webhook"\n', ("notify", 0, "webhook"), "exactly one of url"),
    ('[[notify]]\nkind = "webhook"\nurl = "ftp://x/y"\n', ("notify", 0, "webhook", "url"), "http"),
    ('[[notify]]\nkind = "webhook"\nurl = "http://h/x"\nsecret = "abc"\n',
     ("notify", 0, "webhook", "secret"), "Extra inputs"),
    ('[[notify]]\nkind = "webhook"\nurl = "http://h/x"\nsecret_env = "0xdeadbeef is my key"\n',
     ("notify", 0, "webhook", "secret_env"), "NAME of an environment variable"),
    ('[[notify]]\nkind = "pager"\n', ("notify", 0), "pager"),
    ('[[notify]]\nkind = "telegram"\n', ("notify", 0, "telegram", "chat_id"), "required"),
    ('[[notify]]\nkind = "email"\nhost = "h"\nfrom_addr = "a@b"\nto = []\n',
     ("notify", 0, "email", "to"), "at least 1"),
    ('[[notify]]\nkind = "email"\nhost = "h"\nfrom_addr = "a@b"\nto = ["c@d"]\nusername = "u"\n',
     ("notify", 0, "email"), "go together"),
    ('[[notify]]\nkind = "slack"\nurl = "http://h/x"\nstatuses = ["safe"]\n',
     ("notify", 0, "slack", "statuses"), "unknown status"),
    ('[[notify]]\nkind = "slack"\nurl = "http://h/x"\naccounts = ["0x12"]\n',
     ("notify", 0, "slack", "accounts"), "not a valid address"),
    ('[[notify]]\nkind = "slack"\nurl = "http://h/x"\naccounts = "some"\n',
     ("notify", 0, "slack", "accounts"), '"all"'),
    ('[[notify]]\nkind = "slack"\nurl = "http://h/x"\ncooldown_s = 1.5\n',
     ("notify", 0, "slack", "cooldown_s"), "integer"),
    (('[[notify]]\nkind = "slack"\nurl = "http://h/x"\nname = "a"\n'
      '[[notify]]\nkind = "discord"\nurl = "http://h/y"\nname = "a"\n'), ("notify",), "duplicate"),
    ('[notify_rules]\nstatus = ["watch"]\n', ("notify_rules", "status"), "Extra inputs"),
])
def test_bad_config_names_the_key(text, loc, words):
    found = errors(text)
    assert any(l == loc and words in m for l, _, m in found), found


def test_secrets_are_never_read_from_the_file():
    # there is no key for a secret's value: only *_env names
    for key in ("secret", "token", "password", "bot_token"):
        kind = {"secret": "webhook", "token": "telegram", "bot_token": "telegram"}.get(key, "email")
        extra = {"webhook": 'url = "http://h/x"', "telegram": "chat_id = 1",
                 "email": 'host = "h"\nfrom_addr = "a@b"\nto = ["c@d"]'}[kind]
        found = errors(f'[[notify]]\nkind = "{kind}"\n{extra}\n{key} = "x"\n')
        assert any(t == "extra_forbidden" for _, t, _ in found), (key, found)
