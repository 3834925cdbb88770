"""CLI conventions: --version, --help naming the environment, log options over [log],
warnings held back before a table, health factors for people."""

from __future__ import annotations

import io
import json
import logging
from importlib.metadata import version

import pytest
import structlog
from typer.testing import CliRunner

from keeper import __version__, log
from keeper.cli import app
from keeper.cli_options import WarningTally, resolve
from keeper.log_config import LogConfig
from keeper.units import UINT256_MAX, format_hf

runner = CliRunner()
CONFIG = """[chain]
rpc_url = "http://127.0.0.1:9"
{extra}
[[markets]]
protocol = "aave_v3"
pool_addresses_provider = "0x0000000000000000000000000000000000000001"
"""


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    level = root.level
    yield
    structlog.reset_defaults()
    for h in [h for h in root.handlers if getattr(h, "_keeper_handler", False)]:
        root.removeHandler(h)
    root.setLevel(level)


def test_version_is_the_installed_distributions():
    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0
    assert out.stdout.strip() == f"keeper {__version__}" == f"keeper {version('keeper')}"


@pytest.mark.parametrize("command", ["scan", "run", "doctor"])
def test_help_names_the_environment_variables(command):
    out = runner.invoke(app, [command, "--help"], terminal_width=200)
    assert out.exit_code == 0
    for name in ("KEEPER_RPC_URL", "KEEPER_PRIVATE_KEY", "KEEPER_TELEGRAM_TOKEN", "--log-level",
                 "--log-format"):
        assert name in out.stdout, (command, name)


def test_bad_log_option_is_refused_before_anything_runs(tmp_path):
    cfg = tmp_path / "k.toml"
    cfg.write_text(CONFIG.format(extra=""))
    out = runner.invoke(app, ["scan", "-c", str(cfg), "--log-format", "xml"])
    assert out.exit_code == 2 and "--log-format" in out.output and "json, console" in out.output


def test_bad_log_key_in_the_config_names_the_key(tmp_path):
    cfg = tmp_path / "k.toml"
    cfg.write_text(CONFIG.format(extra='[log]\nformat = "yaml"\n'))
    out = runner.invoke(app, ["scan", "-c", str(cfg)])
    assert out.exit_code == 2
    assert "log.format" in out.output and "'yaml'" in out.output


def test_command_line_wins_over_config_over_default():
    assert resolve(None, None, None) == ("info", None)  # JSON unless a terminal
    cfg = LogConfig(level="warning", format="console")
    assert resolve(cfg, None, None) == ("warning", False)
    assert resolve(cfg, "DEBUG", "json") == ("debug", True)


def test_warning_tally_holds_back_warnings_and_lets_errors_through():
    buf = io.StringIO()
    log.configure_logging(json=True, level="info", stream=buf)
    tally = WarningTally().install()
    lg = structlog.get_logger()
    for _ in range(3):
        lg.warning("position.flagged", account="0xabc")
    lg.warning("reader.unavailable")
    lg.error("tick.failed", error="boom")
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert [x["event"] for x in lines] == ["tick.failed"]
    assert tally.summary() == ("4 warnings held back (position.flagged 3, reader.unavailable 1): "
                               "--log-level debug shows them")
    assert WarningTally().summary() is None


def test_health_factor_for_people():
    assert format_hf(None) == format_hf(UINT256_MAX) == "no debt"
    assert format_hf(291256492_266600000000000000) == "> 1000"  # the demo's recovered alert
    assert format_hf(1000 * 10**18) == "1000.0000"
    assert format_hf(1000 * 10**18 + 1) == "> 1000"
    assert format_hf(1_023_499_999_999_999_999) == "1.0234"  # truncated, never rounded up
