"""Config of the DEX keeper sells seized collateral on: the ``[dex]`` table.

```toml
[dex]
uniswap_v3_factory = "0x1F98431c8aD98523631AE4a59f267346ea31F984"
uniswap_v3_router  = "0xE592427A0AEce92De3Edee1F18E0157C05861564"   # the original SwapRouter
uniswap_v3_quoter  = "0x61fFE014bA17989E743c5F6cB21bF9697530B21e"   # QuoterV2
```

All three or none: capital-free liquidation needs the factory (pool states for the exact
math), the router (the contract swaps through it) and the quoter (a second opinion by
``eth_call``). ``SwapRouter`` is the original periphery router, whose ``exactInput*`` take a
deadline (SwapRouter02 encodings differ).
"""

from __future__ import annotations

from pydantic import model_validator

from keeper.config_types import NonZeroAddress, _fail, _Model

DEX_KEYS = ("uniswap_v3_factory", "uniswap_v3_router", "uniswap_v3_quoter")


class DexConfig(_Model):
    uniswap_v3_factory: NonZeroAddress | None = None
    uniswap_v3_router: NonZeroAddress | None = None
    uniswap_v3_quoter: NonZeroAddress | None = None

    @model_validator(mode="after")
    def _all_or_none(self) -> DexConfig:
        given = [k for k in DEX_KEYS if getattr(self, k) is not None]
        if given and len(given) != len(DEX_KEYS):
            missing = [k for k in DEX_KEYS if k not in given]
            raise _fail(f"set all of {', '.join(DEX_KEYS)} or none (missing {', '.join(missing)})",
                        field=missing[0])
        return self

    @property
    def configured(self) -> bool:
        return self.uniswap_v3_factory is not None
