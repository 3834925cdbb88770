"""keeper.log: real output, captured; secrets never reach a line."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime

import pytest
import structlog

from keeper import log
from keeper.config import load_config

PRIVATE_KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
API_KEY = "AbCdEfGh0123456789IjKlMnOp"
RPC_URL = f"https://eth-mainnet.g.alchemy.com/v2/{API_KEY}"
TX_HASH = "0x" + "ab" * 32


@pytest.fixture(autouse=True)
def _restore_logging():
    """configure_logging is global: put everything back for the other tests."""
    root = logging.getLogger()
    level, quiet = root.level, {n: logging.getLogger(n).level for n in log._QUIET_LIBRARIES}
    yield
    log.clear_secrets()
    structlog.reset_defaults()
    for h in [h for h in root.handlers if getattr(h, "_keeper_handler", False)]:
        root.removeHandler(h)
    root.setLevel(level)
    for name, lvl in quiet.items():
        logging.getLogger(name).setLevel(lvl)


@pytest.fixture
def out():
    """JSON logging into a buffer: exactly what a pipe would receive."""
    buf = io.StringIO()
    log.configure_logging(json=True, level="debug", stream=buf)
    return buf


def lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_json_lines_with_iso_timestamp_and_level(out):
    structlog.get_logger().info("position.flagged", account="0xabc", hf_wad=2**256 - 1)
    (line,) = lines(out)
    assert line["event"] == "position.flagged"
    assert line["level"] == "info"
    assert line["hf_wad"] == 2**256 - 1  # raw ints, exact
    assert datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).tzinfo is not None


def test_level_filters(out):
    log.configure_logging(json=True, level="warning", stream=out)
    structlog.get_logger().info("tick.done")
    structlog.get_logger().warning("feed.stale")
    assert [x["event"] for x in lines(out)] == ["feed.stale"]


def test_console_renderer_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    buf = Tty()
    log.configure_logging(stream=buf)
    structlog.get_logger().info("tick.done", block=7, private_key=PRIVATE_KEY)
    text = buf.getvalue()
    assert "tick.done" in text and "block=7" in text
    assert not text.lstrip().startswith("{")
    assert PRIVATE_KEY[2:] not in text


def test_json_when_not_a_terminal():
    buf = io.StringIO()  # isatty() is False
    log.configure_logging(stream=buf)
    structlog.get_logger().info("tick.done")
    assert json.loads(buf.getvalue())["event"] == "tick.done"


def test_private_key_never_reaches_a_line(out):
    """Every way the key could slip in: by name, nested, inside text, in a traceback."""
    log.register_secret(PRIVATE_KEY)
    logger = structlog.get_logger().bind(signer_key=PRIVATE_KEY)
    logger.info("signer.loaded", private_key=PRIVATE_KEY)
    logger.info("tx.built", tx={"from": "0x1", "extra": [{"privateKey": PRIVATE_KEY}]})
    logger.info("oops.text", note=f"key is {PRIVATE_KEY} ok", bare=PRIVATE_KEY[2:].upper())
    logger.info(f"event.with {PRIVATE_KEY}")
    try:
        raise ValueError(f"bad key {PRIVATE_KEY}")
    except ValueError:
        logger.exception("signer.failed")
    logging.getLogger("web3.manager").error("stdlib says %s", PRIVATE_KEY)

    text = out.getvalue()
    assert len(lines(out)) == 6
    assert PRIVATE_KEY[2:].lower() not in text.lower()
    assert "***" in text
    assert "Traceback" in text  # the traceback is there, scrubbed


def test_private_key_by_key_name_without_registering(out):
    structlog.get_logger().info(
        "signer.loaded",
        private_key=PRIVATE_KEY,
        nested={"deep": [{"key": PRIVATE_KEY}], "smtp_password": "hunter2-long"},
    )
    text = out.getvalue()
    assert PRIVATE_KEY[2:] not in text
    assert "hunter2" not in text


def test_sensible_key_names_are_kept(out):
    structlog.get_logger().info(
        "reserve.read",
        token_address="0x" + "11" * 20,
        debt_token="0x" + "22" * 20,
        tx_hash=TX_HASH,
        tokens=3,
        cache_key="short",
    )
    (line,) = lines(out)
    assert line["token_address"] == "0x" + "11" * 20
    assert line["debt_token"] == "0x" + "22" * 20
    assert line["tx_hash"] == TX_HASH  # 32-byte hex, but not under a key-like name
    assert line["tokens"] == 3 and line["cache_key"] == "short"


@pytest.mark.parametrize(
    ("key", "redacted"),
    [("private_key", True), ("PRIVATE-KEY", True), ("bot_token", True), ("token", True),
     ("smtp_password", True), ("client_secret", True), ("api_key", True),
     ("authorization", True), ("token_address", False), ("tokens", False),
     ("a_token", True), ("account", False), ("author", False)],
)  # fmt: skip
def test_secret_key_names(key, redacted):
    assert log.is_secret_key(key) is redacted


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (RPC_URL, "https://eth-mainnet.g.alchemy.com/***"),
        ("https://mainnet.infura.io/v3/9aa3d95b3bc440fa88ea12eaa4456161",
         "https://mainnet.infura.io/***"),
        ("https://user:pa55word@node.example:8545/rpc", "https://***@node.example:8545/rpc"),
        ("https://api.example/rpc?apikey=abc", "https://api.example/***"),
        ("wss://x.example/ws?api_key=abcdef", "wss://x.example/***"),
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("https://rpc.ankr.com/eth", "https://rpc.ankr.com/eth"),
        ("https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX",
         "https://hooks.slack.com/***"),
    ],
)  # fmt: skip
def test_redact_url(url, shown):
    assert log.redact_url(url) == shown


def test_urls_with_credentials_are_redacted_inside_any_string(out):
    structlog.get_logger().warning(
        "rpc.failed",
        error=f"HTTPError: 429 for url '{RPC_URL}'.",
        urls=[RPC_URL, "http://127.0.0.1:8545"],
        endpoint=RPC_URL,
    )
    (line,) = lines(out)
    assert API_KEY not in out.getvalue()
    assert line["error"] == "HTTPError: 429 for url 'https://eth-mainnet.g.alchemy.com/***'."
    assert line["urls"] == ["https://eth-mainnet.g.alchemy.com/***", "http://127.0.0.1:8545"]


def test_registered_url_is_redacted_even_in_pieces(out):
    log.register_secret(RPC_URL)
    structlog.get_logger().error("rpc.failed", error=f"POST /v2/{API_KEY} returned 401")
    assert API_KEY not in out.getvalue()
    assert "/v2/***" in out.getvalue()


def test_short_strings_are_not_registered(out):
    log.register_secret("abc")
    log.register_secret("")
    structlog.get_logger().info("tick.done", note="abc abc")
    assert lines(out)[0]["note"] == "abc abc"


def test_objects_and_exceptions_are_rendered_and_scrubbed(out):
    log.register_secret(PRIVATE_KEY)
    err = RuntimeError(f"signing with {PRIVATE_KEY} failed")
    structlog.get_logger().error("tx.failed", error=err, when={1, 2})
    (line,) = lines(out)
    assert line["error"] == "RuntimeError: signing with *** failed"


def test_config_secrets_never_reach_a_line(out, tmp_path):
    """The whole path: load a config with both secrets, register them, log everything."""
    path = tmp_path / "keeper.toml"
    path.write_text(
        '[chain]\nrpc_url = "http://127.0.0.1:8545"\n[[markets]]\nprotocol = "aave_v3"\n'
        'pool_addresses_provider = "0x2f39d218133AFaB8F2B819B1066c7E434Ad94E9e"\n'
    )
    cfg = load_config(path, env={"KEEPER_RPC_URL": RPC_URL, "KEEPER_PRIVATE_KEY": PRIVATE_KEY})
    for secret in cfg.secrets():
        log.register_secret(secret)
    logger = structlog.get_logger()
    logger.info("config.loaded", config=cfg, chain=cfg.chain, key=cfg.private_key)
    logger.info("config.loaded", dump=cfg.model_dump(), revealed=cfg.private_key.reveal())
    logger.info("rpc.using", url=cfg.chain.rpc_url.reveal())
    text = out.getvalue()
    assert PRIVATE_KEY[2:] not in text
    assert API_KEY not in text
    assert len(lines(out)) == 3


def test_stdlib_logging_goes_through_the_redactor(out):
    logging.getLogger("keeper.test").warning("calling %s", RPC_URL)
    (line,) = lines(out)
    assert line["event"] == "calling https://eth-mainnet.g.alchemy.com/***"
    assert line["logger"] == "keeper.test"


def test_noisy_libraries_are_held_at_warning(out):
    logging.getLogger("httpx").info("HTTP Request: POST %s", RPC_URL)
    assert out.getvalue() == ""
