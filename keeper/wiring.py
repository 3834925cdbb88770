"""Build the running keeper from a Config: node, store, engine, and (when configured) the
executors and notifications behind ``Engine.responder``."""

from __future__ import annotations

from dataclasses import dataclass

from keeper.chain.rpc import Rpc
from keeper.config import Config
from keeper.decide import policy_from
from keeper.engine import Engine
from keeper.store import Store


@dataclass
class Keeper:
    cfg: Config
    rpc: Rpc
    store: Store
    engine: Engine
    notifications: object | None = None
    executor: object | None = None

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
        executor = None
        if policy.liquidate or policy.protect:
            executor = await _build_executor(cfg, rpc, store, engine)
        notifications = None
        if cfg.notify:
            from keeper.notify.service import build_notifications

            notifications = build_notifications(cfg.notify, cfg.notify_secrets, store, cfg.notify_rules)
        if executor is not None or notifications is not None:
            from keeper.respond import Responder

            engine.responder = Responder(rpc, engine.mc, policy, executor, notifications)
            engine.responder.morpho_of = {w.key: w.adapter.base.morpho for w in engine.watches
                                          if hasattr(w.adapter, "base")}
            engine.responder.symbols_of = {w.key: w.adapter.symbols for w in engine.watches
                                           if hasattr(w.adapter, "base")}  # filled on first load
        k.executor, k.notifications = executor, notifications
        return k
    except BaseException:
        await k.close()
        raise


async def _build_executor(cfg: Config, rpc: Rpc, store: Store, engine: Engine):
    from keeper.executors.actions import ActionExecutor
    from keeper.executors.guard import AllowList, aave_v3_allow_list
    from keeper.executors.tx import build_tx_manager
    from keeper.executors.others import (comet_allow_list, comet_topup_allow_list, morpho_allow_list,
                                         morpho_topup_allow_list)
    from keeper.protocols.aave_v3 import AaveV3Adapter
    from keeper.protocols.compound_v3 import CometAdapter
    from keeper.protocols.morpho_watch import MorphoMarketAdapter

    block = await rpc.block_number()
    allow = AllowList.of([])
    for w in engine.watches:  # the configured markets' contracts and tokens, nothing else
        if isinstance(w.adapter, AaveV3Adapter):
            st = await w.adapter.connect(block)
            allow = allow | aave_v3_allow_list(st.pool, st.assets)
        elif isinstance(w.adapter, MorphoMarketAdapter):
            params = (await w.adapter.base.market_params(block))[w.adapter.id]
            tokens = [params.loan_token, params.collateral_token]
            allow = (allow | morpho_allow_list(w.adapter.base.morpho, [params.loan_token])
                     | morpho_topup_allow_list(w.adapter.base.morpho, tokens))
        elif isinstance(w.adapter, CometAdapter):
            st = await w.adapter.connect(block)
            allow = (allow | comet_allow_list(w.adapter.comet, st.base_token)
                     | comet_topup_allow_list(w.adapter.comet, [st.base_token] + [a.asset for a in st.assets]))
    tx = build_tx_manager(cfg.executor, mode=cfg.mode, private_key=cfg.private_key, rpc=rpc,
                          store=store, allow=allow)
    await tx.reconcile()  # settle what a crash left in the journal before anything new
    return ActionExecutor(tx, rpc, store, cfg.liquidator.gas_price_asset)
