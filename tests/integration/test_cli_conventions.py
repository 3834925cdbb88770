"""`keeper scan` as an operator sees it: warnings summed up in one line ahead of the table,
each of them with --log-level debug, in the format --log-format asks for."""

from __future__ import annotations

import json

from tests.integration.test_cli import config_copy, keeper


def test_scan_sums_up_warnings_in_one_line(devnet, tmp_path):
    out = keeper("scan", "--config", str(config_copy(devnet, tmp_path)))
    assert out.returncode == 0, out.stderr
    held = [line for line in out.stderr.splitlines() if "held back" in line]
    assert len(held) == 1 and "position.flagged" in held[0]
    assert "position.flagged" not in out.stderr.replace(held[0], "")
    assert "at block" in out.stdout  # the table


def test_debug_shows_each_warning_as_json(devnet, tmp_path):
    out = keeper("scan", "--config", str(config_copy(devnet, tmp_path)), "--log-level", "debug",
                 "--log-format", "json")
    assert out.returncode == 0, out.stderr
    events = [json.loads(x) for x in out.stderr.splitlines() if x.startswith("{")]
    flagged = [e for e in events if e["event"] == "position.flagged"]
    assert flagged and all(e["level"] == "warning" for e in flagged)
    assert "held back" not in out.stderr


def test_console_format_from_the_config(devnet, tmp_path):
    cfg = config_copy(devnet, tmp_path, '\n[log]\nlevel = "debug"\nformat = "console"\n')
    out = keeper("scan", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    lines = [x for x in out.stderr.splitlines() if "position.flagged" in x]
    assert lines and not any(x.lstrip().startswith("{") for x in lines)
    assert "[warning  ]" in lines[0]
