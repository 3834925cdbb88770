"""The `keeper` command: scan, run, doctor, devnet."""

from __future__ import annotations

import asyncio
import json
import sys
from contextlib import nullcontext
import time
from pathlib import Path
from typing import Annotated, Optional

import structlog
import typer
from rich.console import Console
from rich.table import Table

from keeper.cli_options import (LogFormatOpt, LogLevelOpt, WarningTally, env_help, resolve,
                                 version_callback)
from keeper.errors import ConfigError, KeeperError
from keeper.units import BPS, UINT256_MAX, format_fixed, format_hf, parse_fixed

app = typer.Typer(help="Watch DeFi loans and act before they go bad.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
err = Console(stderr=True)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="keeper TOML config file")]
ENV_HELP = env_help()


@app.callback()
def main(ctx: typer.Context,
         version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True,
                                               help="print keeper's version and exit")] = False,
         log_level: LogLevelOpt = None, log_format: LogFormatOpt = None) -> None:
    """Watch DeFi loans and act before they go bad."""
    ctx.obj = {"log_level": log_level, "log_format": log_format}


def _fail(e: KeeperError) -> None:
    err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
    raise typer.Exit(e.exit_code if isinstance(e, ConfigError) else 1)


def _setup(config: Path, ctx: typer.Context | None = None, level: str | None = None,
           fmt: str | None = None):
    from keeper.config import load_config
    from keeper.log import configure_logging, register_secret

    root = (ctx.obj if ctx is not None else None) or {}
    level, fmt = level or root.get("log_level"), fmt or root.get("log_format")
    resolve(None, level, fmt)  # a bad option is refused before the file is read
    cfg = load_config(config)
    level, as_json = resolve(cfg.log, level, fmt)
    configure_logging(json=as_json, level=level)
    for secret in cfg.secrets():
        register_secret(secret)
    return cfg


def logging_level() -> int:
    import logging

    return logging.getLogger().getEffectiveLevel()


def parse_shock(text: str) -> tuple[str, int]:
    """'WETH=-20%' -> ('WETH', -2000) bps, exactly."""
    sym, sep, val = text.partition("=")
    if not sep or not sym or not val.endswith("%"):
        raise ConfigError(f"--shock {text!r}: expected ASSET=PCT%, e.g. WETH=-20%")
    try:
        bps = parse_fixed(val[:-1], 2)
    except ValueError as e:
        raise ConfigError(f"--shock {text!r}: {e}") from e
    if bps <= -BPS:
        raise ConfigError(f"--shock {text!r}: a price cannot fall by 100% or more")
    return sym.upper(), bps


def _hf(hf: int | None) -> str:
    return format_hf(hf)


def _row(p) -> dict:
    return {"protocol": p.protocol, "market": p.market, "account": p.account,
            "health_factor": p.health_factor_wad, "collateral_base": p.collateral_base,
            "debt_base": p.debt_base, "status": p.status.value, "block": p.block,
            "reliable": p.reliable, "liquidation_threshold_bps": p.liquidation_threshold_bps,
            "main_collateral": p.main_collateral,
            "drop_to_liquidation_bps": p.drop_to_liquidation_bps, "base_decimals": p.base_decimals}


def _sort_key(p):
    return (p.health_factor_wad if p.health_factor_wad is not None else UINT256_MAX, p.account)


def print_table(positions, block: int, title: str, console: Console | None = None) -> None:
    console = console or Console()
    t = Table(title=f"{title} at block {block}", title_justify="left")
    for col, just in (("account", "left"), ("market", "left"), ("health factor", "right"),
                      ("status", "left"), ("collateral", "right"), ("debt", "right"),
                      ("main collateral", "left"),
                      ("drop to liq.", "right"), ("feeds", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    colors = {"safe": "green", "watch": "yellow", "at_risk": "bold yellow",
              "liquidatable": "bold red"}
    for p in sorted(positions, key=_sort_key):
        drop = "-" if p.drop_to_liquidation_bps is None else f"{format_fixed(p.drop_to_liquidation_bps, 2)}%"
        t.add_row(p.account, p.protocol + " " + p.market[:10], _hf(p.health_factor_wad),
                  f"[{colors[p.status.value]}]{p.status.value}[/]",
                  format_fixed(p.collateral_base, p.base_decimals, 2),
                  format_fixed(p.debt_base, p.base_decimals, 2),
                  p.main_collateral or "-", drop, "ok" if p.reliable else "[red]UNRELIABLE[/]")
    console.print(t)


@app.command(epilog=ENV_HELP)
def scan(ctx: typer.Context, config: ConfigOpt,
         as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
         shock: Annotated[Optional[list[str]], typer.Option(help="what-if, e.g. WETH=-20% (repeatable)")] = None,
         block: Annotated[Optional[int], typer.Option(help="pin this block (default: head)")] = None,
         check: Annotated[bool, typer.Option(help="also ask each protocol's own view and compare")] = False,
         log_level: LogLevelOpt = None, log_format: LogFormatOpt = None):
    """One pass over every tracked position, sorted by health factor.

    Warnings logged during the scan (position.flagged...) are summed up in one line before
    the table; --log-level debug shows each of them."""
    tally = None
    try:
        shocks = dict(parse_shock(s) for s in (shock or []))
        cfg = _setup(config, ctx, log_level, log_format)
        if not as_json and logging_level() > 10:
            tally = WarningTally().install()
        from keeper.progress import Steps

        steps = Steps(err) if not as_json and err.is_terminal else Steps.quiet()
        positions, pinned, mismatches = asyncio.run(_scan(cfg, shocks, block, check, steps))
    except KeeperError as e:
        _fail(e)
        return
    if tally is not None and tally.summary():
        err.print(f"[yellow]{tally.summary()}[/]", highlight=False, soft_wrap=True)
    if as_json:
        for p in sorted(positions, key=_sort_key):
            sys.stdout.write(json.dumps(_row(p)) + "\n")
    else:
        what = "what-if " + ", ".join(f"{k} {format_fixed(v, 2)}%" for k, v in shocks.items()) if shocks else "scan"
        print_table(positions, pinned, what)
    if check:
        (err if mismatches else Console(stderr=True)).print(
            f"checked against each protocol's own view (Aave getUserAccountData, Morpho liquidate "
            f"health check, Comet isLiquidatable): {mismatches} mismatches in {len(positions)} positions")
        if mismatches:
            raise typer.Exit(1)


async def _scan(cfg, shocks, block, check, steps=None):
    from keeper.chain.rpc import Rpc
    from keeper.engine import Engine
    from keeper.store import Store

    rpc = Rpc.from_config(cfg.chain)
    store = Store(cfg.store.path)
    try:
        engine = Engine(cfg, rpc, store, drops="all")
        pinned = block if block is not None else await rpc.block_number()
        with steps.step(f"discover borrowers up to block {pinned}") if steps else nullcontext():
            await engine.index(pinned)
        before, t0 = rpc.counter.http_requests, time.perf_counter()
        with steps.step("read and evaluate every position") if steps else nullcontext():
            positions = await engine.full_scan(pinned, shocks)
        structlog.get_logger("keeper.cli").info(
            "scan.done", block=pinned, positions=len(positions), discovery_requests=before,
            scan_ms=round(1000 * (time.perf_counter() - t0)),
            scan_requests=rpc.counter.http_requests - before,
            scan_rpc_calls=rpc.counter.rpc_calls)
        mismatches = 0
        if check and not shocks:  # each protocol's own view, compared to keeper's math
            for w in engine.watches:
                accts = sorted(w.positions)
                views = await w.adapter.contract_health(accts, pinned)
                mismatches += sum(not w.adapter.agrees(w.positions[a], v) for a, v in zip(accts, views))
        return positions, pinned, mismatches
    finally:
        store.close()
        await rpc.close()


@app.command(epilog=ENV_HELP)
def run(ctx: typer.Context, config: ConfigOpt, log_level: LogLevelOpt = None,
        log_format: LogFormatOpt = None):
    """Watch continuously: index refresh, periodic scans and a tick on each new block."""
    try:
        cfg = _setup(config, ctx, log_level, log_format)
        asyncio.run(_run(cfg, str(config)))
    except KeeperError as e:
        _fail(e)


async def _run(cfg, path: str = "config"):
    from keeper.chain.rpc import Rpc
    from keeper.preflight import require
    from keeper.runner import Runner
    from keeper.wiring import build_keeper

    rpc = Rpc.from_config(cfg.chain)
    try:
        await require(cfg, rpc, path)  # the config against the chain: exit 2 before anything is sent
    finally:
        await rpc.close()
    k = await build_keeper(cfg)
    metrics = None
    try:
        m = cfg.monitor
        runner = Runner(k.engine, m.scan_interval_s, m.index_interval_s,
                        cfg.chain.block_poll_interval_s, k.notifications)
        runner.drain = k.executor.drain if k.executor is not None else None
        if cfg.chain.ws_url is not None:
            from keeper.chain.heads import HeadSubscription

            runner.heads = HeadSubscription(cfg.chain.ws_url.reveal(), runner.on_head, book=k.rpc.heads)
        if cfg.backrun.enabled and k.executor is not None:
            from keeper import backrun

            runner.services.append(backrun.build(cfg, k))
        if cfg.metrics.listen:
            from keeper.metrics import start_metrics

            metrics = runner.metrics = await start_metrics(cfg, k)
        if k.notifications is not None:
            from keeper.ops_alerts import OperatorAlerts

            tx = getattr(k.executor, "tx", None)
            runner.ops = OperatorAlerts(k.rpc, k.notifications, stale_head_s=m.stale_head_s,
                                        gas_address=getattr(tx, "address", None),
                                        min_gas_balance_wei=cfg.executor.min_gas_balance_wei).check
        await runner.run()
    finally:
        if metrics is not None:
            await metrics.close()
        await k.close()


@app.command(epilog=ENV_HELP)
def doctor(ctx: typer.Context, config: ConfigOpt, log_level: LogLevelOpt = None,
           log_format: LogFormatOpt = None):
    """Check the node, the chain id, Multicall3 and every configured address."""
    try:
        cfg = _setup(config, ctx, log_level, log_format)
        checks = asyncio.run(_doctor(cfg))
    except KeeperError as e:
        _fail(e)
        return
    console = Console(highlight=False)
    for c in (*checks[0], *checks[1]):
        mark = "[green]ok  [/]" if c.ok else "[red]FAIL[/]"
        console.print(f"{mark} {c.name}: {c.detail}", soft_wrap=True)
    if not all(c.ok for c in checks[0]):
        raise typer.Exit(ConfigError.exit_code)  # keeper run would refuse to start
    if not all(c.ok for c in checks[1]):
        raise typer.Exit(1)


async def _doctor(cfg):
    """(start-up checks that `keeper run` also makes, the doctor's own checks)."""
    from keeper.chain.rpc import Rpc
    from keeper.doctor import run_doctor
    from keeper.preflight import run_preflight

    rpc = Rpc.from_config(cfg.chain)
    rpc.chain_id_expected = None  # doctor asks anyway; the chain id checks say what is wrong
    try:
        return await run_preflight(cfg, rpc), await run_doctor(cfg, rpc)
    finally:
        await rpc.close()


def _mount_devnet() -> None:
    try:
        from keeper.devnet.cli import devnet_app
    except ImportError:  # pragma: no cover - devnet is part of the package
        return
    app.add_typer(devnet_app, name="devnet",
                  help="A local anvil chain with real Aave V3 and Morpho Blue and a Compound V3 stand-in.")


def _mount_liquidator() -> None:
    from keeper.liquidator_cli import liquidator_app

    app.add_typer(liquidator_app, name="liquidator", help="keeper's capital-free liquidator contract.")


def _mount_protect() -> None:
    from keeper.protect_cli import protect_app

    app.add_typer(protect_app, name="protect", help="Protection from the position itself (deleverage).")


_mount_devnet()
_mount_liquidator()
_mount_protect()
