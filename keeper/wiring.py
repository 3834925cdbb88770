"""Build the running keeper from a Config: node, store, engine, and (when configured) the
executors and notifications behind ``Engine.responder``. Nothing here names a protocol: the
engine builds each market's adapter through keeper.protocols.registry."""

from __future__ import annotations

from dataclasses import dataclass

from keeper.chain.feeds import Feeds
from keeper.chain.rpc import Rpc
from keeper.config import Config
from keeper.decide import policy_from
from keeper.engine import Engine
from keeper.errors import ConfigError
from keeper.prices import PriceBook
from keeper.store import Store


@dataclass
class Keeper:
    cfg: Config
    rpc: Rpc
    store: Store
    engine: Engine
    notifications: object | None = None
    executor: object | None = None
    prices: PriceBook | None = None

    async def close(self) -> None:
        if self.executor is not None:
            await self.executor.drain()
        if self.notifications is not None:
            await self.notifications.aclose()
        self.store.close()
        await self.rpc.close()


async def build_keeper(cfg: Config) -> Keeper:
    rpc = Rpc.from_config(cfg.chain)
    store = Store(cfg.store.path)
    engine = Engine(cfg, rpc, store)
    k = Keeper(cfg, rpc, store, engine)
    try:
        policy = policy_from(cfg)
        prices = PriceBook(cfg.gas_coin)
        feeds = Feeds(engine.mc, cfg.prices.feeds) if cfg.prices.feeds else None
        executor = None
        if policy.liquidate or policy.protect:
            executor = await _build_executor(cfg, rpc, store, engine, prices, feeds)
        notifications = None
        if cfg.notify:
            from keeper.notify.service import build_notifications

            notifications = build_notifications(cfg.notify, cfg.notify_secrets, store, cfg.notify_rules)
        if executor is not None or notifications is not None:
            from keeper.respond import Responder

            engine.responder = Responder(rpc, engine.mc, policy, executor, notifications, prices, feeds,
                                         _dex_reader(cfg, rpc) if executor is not None else None)
        k.executor, k.notifications, k.prices = executor, notifications, prices
        if executor is not None:  # actions the journal settled at start-up get their row and alert
            from keeper.executors.recovery import finish_interrupted

            await finish_interrupted(executor, engine, getattr(engine.responder, "remember", None))
        return k
    except BaseException:
        await k.close()
        raise


def _dex_reader(cfg: Config, rpc: Rpc):
    """Capital-free liquidation is planned when the contract and the DEX are configured."""
    if cfg.liquidator.contract is None or not cfg.liquidator.enabled or not cfg.dex.configured:
        return None
    from keeper.dex.reader import DexReader

    return DexReader(rpc, cfg.dex.uniswap_v3_factory, cfg.liquidator.contract)


async def _build_executor(cfg: Config, rpc: Rpc, store: Store, engine: Engine, prices: PriceBook,
                          feeds: Feeds | None):
    """Load every market once at the head: its contracts and tokens make the guard's
    allow-list (nothing else may be called), its oracle fills the price book. A liquidator
    that cannot price gas in live mode is a configuration error, said once at start-up."""
    from keeper.executors.actions import ActionExecutor
    from keeper.executors.guard import AllowList
    from keeper.executors.tx import build_tx_manager

    block = await rpc.block_number()
    pairs: list[tuple[str, str]] = []
    approvals: list[tuple[str, str]] = []
    for w in engine.watches:
        market = await w.adapter.load_market(block, cfg.monitor.heartbeat_for)
        pairs += w.adapter.allowed_calls(market)
        approvals += w.adapter.approvals(market)
        pairs += [c for rule in cfg.protect if rule.contract for c in w.adapter.protect_calls(rule.contract)]
        prices.learn_symbols(w.adapter.tokens(market))
        prices.learn(w.adapter.prices_usd(market))
    if cfg.liquidator.contract is not None:  # capital-free: only the contract's entry points
        from keeper.dex.liquidator import liquidator_calls

        pairs += liquidator_calls(cfg.liquidator.contract)
    if feeds is not None:
        prices.learn_feeds(await feeds.read(block))
    if cfg.liquidator.enabled and cfg.mode == "live" and prices.gas_usd_e8 is None:
        raise ConfigError(f"the liquidator cannot price gas: no configured market's oracle prices "
                          f"the gas coin {cfg.gas_coin}; add [prices] feeds = {{ {cfg.gas_coin} = "
                          f"\"0x...\" }} (a Chainlink-style USD feed) or set [prices] gas_coin",
                          key="prices.feeds")
    tx = build_tx_manager(cfg.executor, mode=cfg.mode, private_key=cfg.private_key, rpc=rpc,
                          store=store, allow=AllowList.of(pairs))
    await tx.reconcile()  # settle what a crash left in the journal before anything new
    executor = ActionExecutor(tx, rpc, store, prices, bid_share_bps=cfg.liquidator.bid_share_bps)
    await executor.approvals.ensure(approvals)  # in place before any action needs them
    return executor
