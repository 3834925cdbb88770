"""Shared pieces of the config models: the Secret type, exact validators and the base model.

Kept apart from keeper/config.py so that every component's config model (notify,
executor, protect, liquidator) can use them without importing config.py.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from eth_utils import is_checksum_address, to_checksum_address
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError, core_schema

from keeper.units import WAD, parse_fixed

ENV_RPC_URL = "KEEPER_RPC_URL"
ENV_RPC_URLS = "KEEPER_RPC_URLS"  # several endpoints, comma-separated
ENV_PRIVATE_KEY = "KEEPER_PRIVATE_KEY"
MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11"
MAX_SECONDS = 31_536_000


class Secret:
    """A string that is never shown: ``str``/``repr`` give ``***``; ``reveal()`` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    get_secret_value = reveal  # the pydantic SecretStr spelling

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return "Secret('***')"

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: Any) -> core_schema.CoreSchema:
        from_str = core_schema.no_info_after_validator_function(cls, core_schema.str_schema())
        return core_schema.union_schema(
            [core_schema.is_instance_schema(cls), from_str],
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )


def _fail(message: str, field: str | None = None) -> PydanticCustomError:
    """Our own error: ``message`` is shown as it is; ``field`` refines the key path."""
    ctx = {"message": message} if field is None else {"message": message, "field": field}
    return PydanticCustomError("keeper", "{message}", ctx)


def _address(value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(f"must be a string address, got {value!r}")
    if not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
        raise _fail(f"not a valid address: {value!r} (expected 0x and 40 hex digits)")
    mixed = value[2:] != value[2:].lower() and value[2:] != value[2:].upper()
    if mixed and not is_checksum_address(value):
        hint = "has mixed case but a wrong EIP-55 checksum (a typo?); write it in lower case"
        raise _fail(f"not a valid address: {value!r} {hint} to skip the check")
    return to_checksum_address(value)


def _nonzero_address(value: Any) -> str:
    checked = _address(value)
    if int(checked, 16) == 0:
        raise _fail("must not be the zero address")
    return checked


def _hf_wad(value: Any) -> int:
    """'1.5' / 1 -> wad int, exactly. TOML floats arrive as Decimal (see _read_toml)."""
    if isinstance(value, Decimal | float):
        hint = f'write it as a string, e.g. "{value}"'
        raise _fail(f"{value} is a float, which is not exact: {hint}")
    if isinstance(value, int) and not isinstance(value, bool):
        wad = value * WAD
    elif isinstance(value, str):
        try:
            wad = parse_fixed(value, 18)
        except ValueError:
            raise _fail(f"not a decimal number: {value!r}") from None
    else:
        raise _fail(f"must be a decimal number written as a string, e.g. \"1.5\", got {value!r}")
    if wad <= 0:
        raise _fail(f"must be greater than 0, got {value!r}")
    return wad


def config_path(value: Any, info: Any) -> Path:
    """A file path from the config, relative to the config file's directory (pydantic passes
    it as ``base_dir`` in the validation context)."""
    if not isinstance(value, str | Path) or not str(value).strip():
        raise _fail(f"must be a file path, got {value!r}")
    base = (info.context or {}).get("base_dir", Path.cwd())
    return (Path(base) / Path(value).expanduser()).resolve()


def _seconds(value: Any) -> float:
    """A duration: int, TOML float, or decimal string. Not money, so float is fine here."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise _fail(f"must be a number of seconds, got {value!r}")
    try:
        seconds = float(Decimal(str(value).strip()))
    except ArithmeticError:
        raise _fail(f"not a number of seconds: {value!r}") from None
    if not seconds > 0 or seconds == float("inf"):
        raise _fail(f"must be greater than 0, got {value!r}")
    if seconds > MAX_SECONDS:  # the scheduler's timedelta would overflow long before inf
        raise _fail(f"must be at most {MAX_SECONDS} (one year), got {value!r}")
    return seconds


def _rpc_url(value: Any) -> Any:
    if isinstance(value, Secret):
        value = value.reveal()
    if not isinstance(value, str):
        raise _fail("must be a string URL")
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise _fail("not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https", "ws", "wss"):
        shown = f"'{parts.scheme}://'" if parts.scheme else "none"
        raise _fail(f"must be an http(s):// or ws(s):// URL (scheme: {shown})")
    if not parts.hostname:
        raise _fail("must be an http(s):// or ws(s):// URL with a host")
    return value.strip()


def _market_id(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"0x[0-9a-fA-F]{64}", value):
        raise _fail(f"not a market id: {value!r} (expected 0x and 64 hex digits)")
    return value.lower()


MarketId = Annotated[str, BeforeValidator(_market_id)]
Address = Annotated[str, BeforeValidator(_address)]
NonZeroAddress = Annotated[str, BeforeValidator(_nonzero_address)]
HealthFactor = Annotated[int, BeforeValidator(_hf_wad)]
Seconds = Annotated[float, BeforeValidator(_seconds)]
PositiveInt = Annotated[int, Field(strict=True, gt=0)]
Block = Annotated[int, Field(strict=True, ge=0)]
RpcUrl = Annotated[Secret, BeforeValidator(_rpc_url)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
