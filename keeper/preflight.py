"""Start-up validation against the chain, shared by ``keeper run`` and ``keeper doctor``.

The config file was validated on its own (keeper.config); this checks it against the
chain before anything is read for real or sent, the same in dry_run and live:

* every endpoint answers and is on the configured chain (``chain.chain_id``; when it is
  not set, all endpoints must agree). An endpoint that does not answer is a problem only
  when none answers: keeper can start on the others and fail back later;
* Multicall3 has code (``chain.multicall3``);
* every configured contract has code and is the kind the config says it is
  (keeper.preflight_probes: an Aave PoolAddressesProvider answers getPool with a Pool that
  lists reserves, Morpho Blue answers idToMarketParams, a Comet answers baseToken...);
* every ``[[protect]]`` rule names a market that exists and tokens that its markets have;
* the signing key (``KEEPER_PRIVATE_KEY`` or the keystore) is readable when an executor
  will run (protect rules or the liquidator).

Each result is a :class:`keeper.doctor.Check` named by the config key it is about.
:func:`require` turns the failures into one :class:`ConfigError` (exit code 2) with one
line per problem. An unreachable node at start is such a problem too, in both modes: keeper
exits 2 with a clear line rather than retrying (a supervisor restarts it).
"""

from __future__ import annotations

from collections.abc import Sequence

from keeper.chain.abi import call_data, string_or_bytes32
from keeper.chain.rpc import Rpc
from keeper.config import Config
from keeper.doctor import Check
from keeper.errors import ConfigError, KeeperError
from keeper.chain.probe import ProbeError
from keeper.protocols import registry


def _ok(key: str, detail: str) -> Check:
    return Check(key, True, detail)


def _bad(key: str, detail: str) -> Check:
    return Check(key, False, detail)


async def _endpoints(cfg: Config, rpc: Rpc) -> list[Check]:
    out: list[Check] = []
    want = cfg.chain.chain_id
    answers = await rpc.check_chain_ids()
    ids = [got for _, got, _ in answers if got is not None]
    if want is None and ids:
        want = ids[0]  # not pinned: every endpoint must agree with the first that answers
    for ep, got, error in answers:
        key = f"chain.rpc_urls[{ep.index}]"
        if got is None:
            out.append(_bad(key, f"endpoint {ep.label} does not answer: {error}") if not ids
                       else _ok(key, f"endpoint {ep.label} does not answer now ({error}); the others serve"))
        elif got != want:
            pinned = cfg.chain.chain_id is not None
            out.append(_bad("chain.chain_id" if pinned else key,
                            f"endpoint {ep.label} is on chain {got}, " +
                            (f"config says {want}" if pinned else f"another endpoint is on {want}")))
        else:
            out.append(_ok(key, f"endpoint {ep.label} on chain {got}"))
    return out


async def _symbols(rpc: Rpc, tokens: Sequence[str], block: int) -> set[str]:
    """The tokens' symbols: one batch, or one call each when a token refuses (no symbol)."""
    tokens = list(dict.fromkeys(tokens))
    try:
        raws = await rpc.calls([(t, call_data("symbol()")) for t in tokens], block)
    except KeeperError:
        raws = []
        for token in tokens:
            try:
                raws.append(await rpc.call(token, call_data("symbol()"), block))
            except KeeperError:
                continue  # a token with no symbol cannot be named in an action anyway
    out = set()
    for raw in raws:
        try:
            out.add(string_or_bytes32(raw).upper())
        except (ValueError, UnicodeDecodeError):
            continue
    return out


async def _markets(cfg: Config, rpc: Rpc, block: int) -> tuple[list[Check], dict[str, set[str] | None]]:
    checks: list[Check] = []
    symbols: dict[str, set[str] | None] = {}  # market name -> its token symbols (None: unknown)
    for i, m in enumerate(cfg.markets):
        symbols[m.name] = None
        try:
            tokens = await registry.probe(m, rpc, block)
        except ProbeError as e:
            checks.append(_bad(f"markets[{i}].{e.field}", str(e)))
            continue
        symbols[m.name] = await _symbols(rpc, tokens, block)
        checks.append(_ok(f"markets[{i}]", f"{m.protocol} {m.name}: tokens {', '.join(sorted(symbols[m.name]))}"))
    return checks, symbols


def _protect(cfg: Config, symbols: dict[str, set[str] | None]) -> list[Check]:
    out: list[Check] = []
    for j, rule in enumerate(cfg.protect):
        if rule.market is not None and rule.market not in symbols:
            out.append(_bad(f"protect[{j}].market",
                            f"no market named {rule.market!r} (markets: {', '.join(symbols)})"))
            continue
        names = [rule.market] if rule.market is not None else list(symbols)
        known = [symbols[n] for n in names]
        if any(s is None for s in known):
            continue  # a market that failed its own check: already one line
        have = set().union(*known)
        for k, (kind, symbol) in enumerate(rule.parsed_actions()):
            missing = [s for s in symbol.split("->") if s not in have]  # deleverage: COLLATERAL->DEBT
            if missing:
                where = f"market {names[0]}" if len(names) == 1 else f"markets {', '.join(names)}"
                out.append(_bad(f"protect[{j}].actions[{k}]",
                                f"{kind}:{symbol}: {where} {'has' if len(names) == 1 else 'have'} no token {missing[0]} "
                                f"(tokens: {', '.join(sorted(have))})"))
    return out


def _signer(cfg: Config) -> list[Check]:
    if not (cfg.protect or cfg.liquidator.enabled):
        return []
    from keeper.executors.signer import load_signer

    try:
        signer = load_signer(cfg.private_key, cfg.executor.keystore, cfg.executor.password_file)
    except ConfigError as e:
        where = ": ".join(p for p in (e.path, e.key) if p)
        return [_bad(e.key or "executor.keystore", str(e)[len(where) + 2:] if where else str(e))]
    return [_ok("executor.signer", f"signing key readable (address {signer.address})")]


async def run_preflight(cfg: Config, rpc: Rpc) -> list[Check]:
    """Every start-up check, one Check per config key (failed ones first in ``require``)."""
    checks = await _endpoints(cfg, rpc)
    if problems(checks):  # no node, or the wrong chain: nothing more to ask it
        return checks + _signer(cfg)
    block = await rpc.block_number()
    if not await rpc.code(cfg.chain.multicall3, block):
        checks.append(_bad("chain.multicall3", f"no contract at {cfg.chain.multicall3}"))
    market_checks, symbols = await _markets(cfg, rpc, block)
    return checks + market_checks + _protect(cfg, symbols) + _signer(cfg)


def problems(checks: Sequence[Check]) -> list[Check]:
    return [c for c in checks if not c.ok]


async def require(cfg: Config, rpc: Rpc, path: str) -> None:
    """Run the checks; any problem -> ConfigError (exit 2), one line per problem."""
    try:
        bad = problems(await run_preflight(cfg, rpc))
    except KeeperError as e:  # the node went away in the middle
        raise ConfigError(f"cannot check the config against the chain: {e}", path=path) from None
    if bad:
        message = bad[0].detail + "".join(f"\n{path}: {c.name}: {c.detail}" for c in bad[1:])
        raise ConfigError(message, path=path, key=bad[0].name)
