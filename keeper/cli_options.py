"""What every `keeper` command shares: --version, --log-level / --log-format (over the
config's ``[log]`` table), the environment variables each command reads (for --help), and
the one-line summary of warnings that would otherwise scroll ahead of `keeper scan`'s table.

Precedence for logging: command-line option > ``[log]`` in the config > default
(``info``; JSON lines unless stderr is a terminal).
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Optional

import structlog
import typer

from keeper import __version__
from keeper.config_types import ENV_PRIVATE_KEY, ENV_RPC_URL
from keeper.log_config import LOG_FORMATS, LOG_LEVELS, LogConfig

LogLevelOpt = Annotated[Optional[str], typer.Option(
    "--log-level", metavar="|".join(LOG_LEVELS),
    help="log threshold (default: log.level in the config, else info)")]
LogFormatOpt = Annotated[Optional[str], typer.Option(
    "--log-format", metavar="json|console",
    help="log lines as JSON or for people (default: log.format in the config, else JSON unless on a terminal)")]

_ENV = {
    ENV_RPC_URL: "overrides chain.rpc_url (an RPC URL often carries an API key)",
    ENV_PRIVATE_KEY: "the signing key for live mode (or executor.keystore + password_file); "
                     "never read from the config file or argv",
    "KEEPER_TELEGRAM_TOKEN": "a Telegram channel's bot token (the default of notify.token_env)",
    "notify.*_env": "the variables a channel names in secret_env (webhook), url_env "
                    "(Slack, Discord), token_env (Telegram), password_env (email)",
}


def env_help(*names: str) -> str:
    """An --help epilog naming the environment variables a command reads."""
    parts = [f"{n}: {_ENV[n]}" for n in (names or tuple(_ENV))]
    return "Environment variables read:\n\n" + "\n\n".join(parts)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"keeper {__version__}")
        raise typer.Exit()


def choose(option: str | None, allowed: tuple[str, ...], what: str) -> str | None:
    """Validate a command-line log option (None: not given)."""
    if option is None:
        return None
    value = option.strip().lower()
    if value not in allowed:
        raise typer.BadParameter(f"{option!r} is not one of {', '.join(allowed)}", param_hint=what)
    return value


def resolve(cfg_log: LogConfig | None, level: str | None, fmt: str | None) -> tuple[str, bool | None]:
    """(level, json) from the command line over the config; json None = decide by terminal."""
    cfg_log = cfg_log or LogConfig()
    level = choose(level, LOG_LEVELS, "--log-level") or cfg_log.level
    fmt = choose(fmt, LOG_FORMATS, "--log-format") or cfg_log.format
    return level, None if fmt == "auto" else fmt == "json"


class WarningTally:
    """A structlog processor that holds back warnings and counts them by event name.

    Used by `keeper scan` (table output, level above debug): 36 ``position.flagged`` lines
    become ``36 warnings held back (position.flagged 36): --log-level debug shows them``.
    Errors still go through at once.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(self, _logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        if method in ("warning", "warn"):
            self.counts[str(event_dict.get("event"))] += 1
            raise structlog.DropEvent
        return event_dict

    def install(self) -> WarningTally:
        processors = structlog.get_config()["processors"]
        structlog.configure(processors=[self, *processors])
        return self

    def summary(self) -> str | None:
        n = sum(self.counts.values())
        if not n:
            return None
        what = ", ".join(f"{k} {v}" for k, v in self.counts.most_common())
        return f"{n} warning{'s' if n > 1 else ''} held back ({what}): --log-level debug shows them"
