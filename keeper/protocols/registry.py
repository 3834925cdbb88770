"""Protocol name (the config's ``protocol``) -> its package. The only module that names them.

A package ``keeper/protocols/<name>/`` provides ``config.MARKET`` (the pydantic model of its
``[[markets]]`` entry) and ``adapter.build(market_config, chain)``, which returns the
``(watch key, MarketAdapter)`` pairs of that entry. Adding a protocol is one package and one
line here.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

PROTOCOLS = ("aave_v3", "morpho_blue", "compound_v3")
DISPLAY = {"aave_v3": "Aave V3", "morpho_blue": "Morpho Blue", "compound_v3": "Compound V3"}


def display_name(protocol: str) -> str:
    return DISPLAY.get(protocol, protocol)


def market_models() -> dict[str, Any]:
    return {name: import_module(f"keeper.protocols.{name}.config").MARKET for name in PROTOCOLS}


def build(market: Any, chain: Any) -> list[tuple[str, Any]]:
    """The watches of one configured market: ``[(key, adapter), ...]``."""
    if market.protocol not in PROTOCOLS:
        raise KeyError(market.protocol)
    return import_module(f"keeper.protocols.{market.protocol}.adapter").build(market, chain)


def decode_error(data: bytes) -> str | None:
    """A custom error (4-byte selector + args) any protocol knows by name, or None. A package
    names its errors in an optional ``errors`` module with ``decode(data) -> str | None`` and
    the ``PREFIX`` people read them with ("Aave error MustNotLeaveDust()")."""
    for name in PROTOCOLS:
        try:
            module = import_module(f"keeper.protocols.{name}.errors")
        except ModuleNotFoundError:
            continue
        found = module.decode(data)
        if found is not None:
            return f"{getattr(module, 'PREFIX', DISPLAY[name] + ' error')} {found}"
    return None


async def probe(market: Any, rpc: Any, block: int) -> list[str]:
    """Start-up probe of a configured market (keeper.preflight): the contract is the kind the
    config says, and these are its tokens. Raises keeper.chain.probe.ProbeError(field, ...)."""
    return await import_module(f"keeper.protocols.{market.protocol}.doctor").probe(rpc, market, block)
