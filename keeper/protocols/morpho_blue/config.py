"""The `[[markets]]` entry of protocol = "morpho_blue"."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from keeper.config_types import Block, MarketId, NonZeroAddress, _Model


class MorphoBlueMarket(_Model):
    """Morpho Blue markets of one Morpho contract, by market id (each id is its own watch)."""

    protocol: Literal["morpho_blue"]
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    morpho: NonZeroAddress
    market_ids: tuple[MarketId, ...] = Field(min_length=1)
    start_block: Block = 0


MARKET = MorphoBlueMarket
