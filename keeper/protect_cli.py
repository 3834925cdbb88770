"""``keeper protect``: set up and show protection from the position itself (deleverage).

::

    keeper protect setup  --config FILE [--keeper 0x...]   # contract + the borrower's delegation
    keeper protect status --config FILE                    # accounts, delegation, firing prices

``setup`` deploys keeper's KeeperProtection (``contracts/src/KeeperProtection.sol``) from the
configured key when a ``[[protect]]`` rule with a ``deleverage:`` action names no ``contract``
(live mode only; put the printed address in the rule), then lists the delegation transactions
each protected account needs, says what each allows, and, in live mode, sends those still
missing from the configured key when it is the borrower's own (``KEEPER_PRIVATE_KEY`` is the
borrower's key when borrowers protect themselves). Running it again sends nothing new.
``status`` prints each protected account's health factor, contract, delegation, and the
price of the collateral its deleverage sells at which the rule fires (``trigger_hf``).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from eth_abi import encode
from rich.console import Console

from keeper.errors import ConfigError, KeeperError

protect_app = typer.Typer(help="Protection from the position itself (deleverage).", no_args_is_help=True,
                          add_completion=False, pretty_exceptions_enable=False)
err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True, markup=False)
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="keeper TOML config file")]


def _run(coro) -> None:
    try:
        asyncio.run(coro)
    except KeeperError as e:
        err.print(f"[bold red]error:[/] {e}", soft_wrap=True)
        raise typer.Exit(e.exit_code if isinstance(e, ConfigError) else 1) from None


@protect_app.command()
def setup(config: ConfigOpt,
          keeper: Annotated[str | None, typer.Option(help="the key that may deleverage for the borrower "
                                                          "(default: the configured key)")] = None) -> None:
    """Deploy the protection contract if needed; print (and in live mode send) the delegation."""
    _run(_setup(config, keeper))


@protect_app.command()
def status(config: ConfigOpt) -> None:
    """Each protected account: health factor, contract, delegation, the price at which it fires."""
    _run(_status(config))


def _rules(cfg):
    from keeper.decide import policy_from

    return list(policy_from(cfg).protect.values())  # keeper.model.ProtectRule


def _deleverage_rules(cfg):
    return [r for r in _rules(cfg) if any(k == "deleverage" for k, _ in r.actions)]


async def _context(cfg):
    from keeper.chain.logs import LogScanner
    from keeper.chain.multicall import Multicall
    from keeper.chain.rpc import Rpc
    from keeper.protocols import registry
    from keeper.protocols.base import ChainReaders

    rpc = Rpc(cfg.chain.rpc_url.get_secret_value(), cfg.chain.request_timeout_s)
    mc = Multicall(rpc, cfg.chain.multicall3)
    chain = ChainReaders(rpc, mc, LogScanner(rpc, cfg.chain.logs_max_range))
    block = await rpc.block_number()
    watches = []
    for m in cfg.markets:
        for _key, adapter in registry.build(m, chain):
            watches.append((adapter, await adapter.load_market(block, cfg.monitor.heartbeat_for)))
    return rpc, watches


def _signer(cfg, required: bool):
    from keeper.executors.signer import load_signer
    from keeper.log import register_secret

    for secret in cfg.secrets():
        register_secret(secret)
    if not required and cfg.private_key is None and cfg.executor.keystore is None:
        return None
    return load_signer(cfg.private_key, cfg.executor.keystore, cfg.executor.password_file)


async def _setup(config: Path, keeper: str | None) -> None:
    from keeper.config import load_config
    from keeper.liquidator_deploy import deploy_checked, send_simulated

    cfg = load_config(config)
    rules = _deleverage_rules(cfg)
    if not rules:
        raise ConfigError("no [[protect]] rule has a deleverage:COLLATERAL->DEBT action", key="protect")
    live = cfg.mode == "live"
    signer = _signer(cfg, required=live)
    me = keeper or (signer.address if signer else None)
    rpc, watches = await _context(cfg)
    try:
        deployed: str | None = None
        for rule in rules:
            contract = rule.contract
            if contract is None:
                if not live:
                    out.print(f"{rule.account}: no [[protect]] contract; run in live mode to deploy one")
                    continue
                if deployed is None:
                    from keeper.devnet.artifacts import load_own

                    router = cfg.dex.uniswap_v3_router
                    code = load_own("KeeperProtection").bytecode + encode(["address"], [router]).hex()
                    deployed = await deploy_checked(rpc, signer, code, {"router()": router}, cfg.chain.chain_id)
                    out.print(f"deployed KeeperProtection at {deployed}: add contract = \"{deployed}\" "
                              f"to each [[protect]] rule")
                contract = deployed
            out.print(f"account {rule.account}  contract {contract}  keeper {me or rule.account}")
            for adapter, market in watches:
                if rule.market not in (None, adapter.market_name):
                    continue
                for d in await adapter.protect_delegation(market, rule, contract, me or rule.account):
                    if d.done:
                        out.print(f"  done     {d.what}")
                        continue
                    out.print(f"  needed   {d.what}\n           tx: to {d.to} data 0x{d.data.hex()}")
                    if live and signer is not None and signer.address.lower() == rule.account.lower():
                        receipt = await send_simulated(rpc, signer, d.to, "0x" + d.data.hex(), cfg.chain.chain_id,
                                                       "delegation")
                        out.print(f"  sent     tx {receipt['transactionHash']}")
                    elif live:
                        out.print("           (not sent: the configured key is not the borrower's)")
    finally:
        await rpc.close()


async def _status(config: Path) -> None:
    from keeper.config import load_config
    from keeper.health.status import DEFAULT_THRESHOLDS

    cfg = load_config(config)
    signer = _signer(cfg, required=False)
    rpc, watches = await _context(cfg)
    try:
        for rule in _rules(cfg):
            for adapter, market in watches:
                if rule.market not in (None, adapter.market_name):
                    continue
                (acct,) = await adapter.read_accounts([rule.account], market)
                hf = adapter.evaluator(market).position(acct, DEFAULT_THRESHOLDS, False).health_factor_wad
                out.print(f"account {rule.account} on {adapter.market_name}: health factor {_hf(hf)}, "
                          f"trigger {_hf(rule.trigger_hf_wad)}, target {_hf(rule.target_hf_wad)}; "
                          f"actions {', '.join(f'{k}:{v}' for k, v in rule.actions)}")
                out.print(f"  contract {rule.contract or '(none: run keeper protect setup)'}")
                if rule.contract:
                    me = signer.address if signer else rule.account
                    for d in await adapter.protect_delegation(market, rule, rule.contract, me):
                        out.print(f"  {'done  ' if d.done else 'MISSING'} {d.what}")
                prices = {sym.upper(): p for sym, p in adapter.prices_usd(market).values()}
                for symbol in dict.fromkeys(s.split("->")[0] for k, s in rule.actions if k == "deleverage"):
                    bps = _firing_drop_bps(adapter, market, acct, symbol, rule.trigger_hf_wad)
                    now = prices.get(symbol)
                    at = "?" if now is None or bps is None else f"${Decimal(now * (10_000 - bps) // 10_000) / 10**8:,.2f}"
                    out.print(f"  fires when {symbol} <= {at} (now "
                              f"{'?' if now is None else f'${Decimal(now) / 10**8:,.2f}'})"
                              + ("" if bps is None else f", a {bps / 100:.2f}% fall"))
                if rule.close_below is not None:
                    sym, usd = rule.close_below
                    out.print(f"  stop-loss: repays all the debt when {sym} <= ${Decimal(usd) / 10**8:,.2f}")
                if rule.boost_above_wad is not None:
                    due = hf is not None and hf > rule.boost_above_wad
                    out.print(f"  boost: above health factor {_hf(rule.boost_above_wad)} re-leverages to "
                              f"{_hf(rule.target_hf_wad)}" + (" (due now)" if due else ""))
    finally:
        await rpc.close()


def _firing_drop_bps(adapter, market, acct, symbol: str, trigger_wad: int) -> int | None:
    """The smallest fall of ``symbol`` (bps, 0 when already below) that puts HF under the trigger."""
    from keeper.health.status import DEFAULT_THRESHOLDS

    def fires(bps: int) -> bool:
        m = adapter.apply_shocks(market, {symbol: -bps})
        hf = adapter.evaluator(m).position(acct, DEFAULT_THRESHOLDS, False).health_factor_wad
        return hf is not None and hf < trigger_wad

    if fires(0):
        return 0
    if not fires(9_999):
        return None
    lo, hi = 0, 9_999
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fires(mid) else (mid, hi)
    return hi


def _hf(wad: int | None) -> str:
    return "none (no debt)" if wad is None else f"{Decimal(wad) / 10**18:.4f}"
