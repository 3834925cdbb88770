"""The `[[markets]]` entry of protocol = "compound_v3"."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from keeper.config_types import Block, NonZeroAddress, _Model


class CompoundV3Market(_Model):
    """One Compound V3 market (a Comet)."""

    protocol: Literal["compound_v3"]
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    comet: NonZeroAddress
    start_block: Block = 0


MARKET = CompoundV3Market
