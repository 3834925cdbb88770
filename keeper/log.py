"""Logging set-up: structlog, JSON lines off a terminal, and a processor that redacts secrets.

Events are named ``noun.verb`` (``position.flagged``, ``tx.sent``) and carry context
bound with ``log.bind(chain_id=..., block=..., account=...)``; amounts are raw ints.

Redaction runs on every event, from keeper and from the standard ``logging`` module
(web3, httpx) alike, *after* exceptions are turned into text, so a traceback is
scrubbed too. It removes, anywhere in the event (nested dicts and lists included):

* the value of any key named like a secret (``private_key``, ``*_password``,
  ``*_secret``, ``*_token``, ``api_key``, ``authorization``...; not ``token_address``);
* a 32-byte hex string (``0x`` + 64 hex) under a key ending in ``key`` (``key``,
  ``signer_key``), where it is likely a private key (a tx hash under ``tx_hash`` is kept);
* credentials inside URLs: ``user:pass@``, API-key-looking path segments
  (``/v2/<key>``) and query strings with key-like names (``?apikey=``), keeping the
  scheme and host: ``https://eth-mainnet.g.alchemy.com/***``;
* every string registered with :func:`register_secret` (the private key, the RPC
  URL), wherever it appears inside any string.
"""

from __future__ import annotations

import functools

import logging
import re
import sys
import threading
from collections.abc import Mapping
from typing import IO, Any
from urllib.parse import urlsplit

import structlog

REDACTED = "***"

# Key names whose value is always a secret: exact match or suffix after "_".
_SECRET_WORDS = (
    "private_key", "privatekey", "priv_key", "secret", "password", "passwd", "token",
    "api_key", "apikey", "auth", "authorization", "mnemonic", "seed_phrase", "credentials",
)  # fmt: skip
# Substrings that make a key secret wherever they appear in its name.
_SECRET_PARTS = ("private_key", "privatekey", "secret", "password", "mnemonic")
_HEX32 = re.compile(r"(?:0x)?[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")  # never a secret: `debt_token=0x...` is kept
_URL = re.compile(r"\b(?:https?|wss?)://[^\s'\"<>`]+", re.IGNORECASE)
_KEYLIKE_SEGMENT = re.compile(r"[A-Za-z0-9_\-:~]{16,}")
_KEYLIKE_PARAM = re.compile(r"key|token|secret|auth|sig|pass|credential", re.IGNORECASE)

_lock = threading.Lock()
_registered: dict[str, str] = {}  # secret text -> replacement
_registered_re: re.Pattern[str] | None = None


def _normalise(key: str) -> str:
    return key.lower().replace("-", "_")


@functools.lru_cache(maxsize=4096)  # log keys are few and repeat on every line
def is_secret_key(key: str) -> bool:
    """True for a key whose value must never be logged (``smtp_password``, ``bot_token``)."""
    k = _normalise(key)
    if any(part in k for part in _SECRET_PARTS):
        return True
    return any(k == w or k.endswith("_" + w) for w in _SECRET_WORDS)


@functools.lru_cache(maxsize=4096)
def _is_key_like_name(key: str) -> bool:
    k = _normalise(key)
    return k in ("pk", "priv") or k.endswith("key")


def redact_url(url: str) -> str:
    """Drop credentials from one URL, keeping scheme and host.

    ``https://user:pw@host/x`` -> ``https://***@host/x``;
    ``https://eth-mainnet.g.alchemy.com/v2/AbC...`` -> ``https://eth-mainnet.g.alchemy.com/***``;
    ``http://127.0.0.1:8545`` is returned as it is.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # e.g. a port that is not a number: keep nothing but the scheme
        scheme = url.split("://", 1)[0]
        return f"{scheme}://{REDACTED}"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    userinfo = f"{REDACTED}@" if parts.username is not None or parts.password is not None else ""
    secret_path = any(_KEYLIKE_SEGMENT.fullmatch(seg) for seg in parts.path.split("/") if seg)
    secret_query = bool(parts.query) and any(
        _KEYLIKE_PARAM.search(name) or _KEYLIKE_SEGMENT.fullmatch(value)
        for name, _, value in (p.partition("=") for p in parts.query.split("&"))
    )
    if secret_path or secret_query or parts.fragment:
        return f"{parts.scheme}://{userinfo}{host}{port}/{REDACTED}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{userinfo}{host}{port}{parts.path}{query}"


def _url_fragments(url: str) -> list[str]:
    """The secret pieces of a URL: password, key-like path segments and query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.password] if parts.password else []
    found += [s for s in parts.path.split("/") if _KEYLIKE_SEGMENT.fullmatch(s)]
    for name, _, value in (p.partition("=") for p in parts.query.split("&") if p):
        if value and (_KEYLIKE_PARAM.search(name) or _KEYLIKE_SEGMENT.fullmatch(value)):
            found.append(value)
    return found


def register_secret(value: str | None) -> None:
    """Redact ``value`` wherever it appears inside any logged string from now on.

    A URL is replaced by its :func:`redact_url` form, and its key-like pieces are
    registered on their own too (an error may quote only the path). A hex private key
    is matched with or without ``0x`` and in any case. Strings shorter than 8
    characters are ignored: redacting them would shred ordinary text.
    """
    global _registered_re
    if not value or len(value) < 8:
        return
    found: dict[str, str] = {}
    if _URL.fullmatch(value):
        found[value] = redact_url(value)
        for piece in _url_fragments(value):
            if len(piece) >= 8:
                found[piece] = REDACTED
    else:
        found[value] = REDACTED
        if _HEX32.fullmatch(value):
            found[value.removeprefix("0x").removeprefix("0X")] = REDACTED
    with _lock:
        _registered.update(found)
        alternatives = sorted(_registered, key=len, reverse=True)  # longest first
        _registered_re = re.compile("|".join(map(re.escape, alternatives)), re.IGNORECASE)


def clear_secrets() -> None:
    """Forget every registered secret (for tests)."""
    global _registered_re
    with _lock:
        _registered.clear()
        _registered_re = None


def _replacement(match: re.Match[str]) -> str:
    text = match.group(0)
    for secret, repl in _registered.items():
        if secret.lower() == text.lower():
            return repl
    return REDACTED


def scrub(text: str) -> str:
    """Redact registered secrets and URL credentials inside one string."""
    pattern = _registered_re
    if pattern is not None:
        text = pattern.sub(_replacement, text)
    if "://" in text:
        text = _URL.sub(_redact_url_match, text)
    return text


def _redact_url_match(match: re.Match[str]) -> str:
    url = match.group(0)
    core = url.rstrip(".,;:!?)]}")  # punctuation after a URL in prose is not part of it
    return redact_url(core) + url[len(core) :]


def redact(value: Any, key: str | None = None) -> Any:
    """Return ``value`` with every secret in it redacted (recursively)."""
    if key is not None:
        if is_secret_key(key) and not (isinstance(value, str) and _ADDRESS.fullmatch(value)):
            return REDACTED if value is not None else None
        if isinstance(value, str) and _is_key_like_name(key) and _HEX32.fullmatch(value):
            return REDACTED
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {k: redact(v, k if isinstance(k, str) else None) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    return scrub(str(value))  # Path, Decimal, a Secret (whose str is already redacted)...


def redact_secrets(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: see the module docstring."""
    return {k: redact(v, k) for k, v in event_dict.items()}


_HANDLER_MARK = "_keeper_handler"
_QUIET_LIBRARIES = ("apscheduler", "httpx", "httpcore", "web3", "urllib3", "websockets", "aiosqlite")


def configure_logging(
    json: bool | None = None, level: str = "info", stream: IO[str] | None = None
) -> None:
    """Set up structlog and the standard ``logging`` module to write through one redactor.

    ``stream`` defaults to ``sys.stderr``, so that a command's own output on stdout
    (``keeper scan --json``) stays clean. ``json=None`` picks JSON lines unless that
    stream is a terminal. ``level`` is a standard level name (``debug``, ``info``...).
    Libraries that log URLs at INFO (httpx, web3) are held at WARNING or above.
    """
    out = stream if stream is not None else sys.stderr
    if json is None:
        isatty = getattr(out, "isatty", None)
        json = not (isatty is not None and isatty())
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(default=lambda o: scrub(str(o)))
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    # Exceptions become text before redaction, so tracebacks are scrubbed as well.
    tail = [structlog.processors.format_exc_info, redact_secrets, renderer]
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *tail],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )

    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
        )
    )
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


def get_logger(**context: Any) -> Any:
    """A structlog logger with ``context`` bound."""
    return structlog.get_logger().bind(**context)
