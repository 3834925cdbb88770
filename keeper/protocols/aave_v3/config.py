"""The `[[markets]]` entry of protocol = "aave_v3"."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from keeper.config_types import Block, NonZeroAddress, _Model


class AaveV3Market(_Model):
    """An Aave V3 market (or a fork with its interface), found from its PoolAddressesProvider."""

    protocol: Literal["aave_v3"]
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    pool_addresses_provider: NonZeroAddress
    start_block: Block = 0


MARKET = AaveV3Market
