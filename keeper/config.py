"""Start-up configuration: one TOML file plus two environment variables, validated once.

:func:`load_config` is the only way in and this is the only module of keeper that
reads the environment:

* ``KEEPER_RPC_URL`` overrides ``[chain] rpc_url`` (it may carry an API key), and
  ``KEEPER_RPC_URLS`` (comma-separated) overrides ``[chain] rpc_urls``: several endpoints;
* ``KEEPER_PRIVATE_KEY`` is the only source of ``Config.private_key``; a
  ``private_key`` anywhere in the file is refused.

Every problem is a :class:`keeper.errors.ConfigError` (exit code 2) naming the file,
the key path (``markets[0].pool_addresses_provider``) and what is wrong. Health-factor
thresholds are parsed exactly to wad ints; a TOML float is refused because it is not
exact. Secrets are :class:`Secret`, whose ``str``/``repr`` never show the value.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, PrivateAttr, ValidationError
from pydantic import ValidationInfo, field_validator, model_validator

from keeper.config_actions import LiquidatorConfig, PricesConfig, ProtectConfig
from keeper.config_backrun import BackrunConfig
from keeper.config_dex import DexConfig
from keeper.config_executor import ExecutorConfig
from keeper.notify.config import CHANNEL_MODELS, NotifyChannels, NotifyRules, resolve_secrets
from keeper.config_types import (ENV_PRIVATE_KEY, ENV_RPC_URL, ENV_RPC_URLS, MULTICALL3, Address, HealthFactor, PositiveInt, RpcUrl, Seconds, Secret, _fail, _Model, config_path)
from keeper.errors import ConfigError
from keeper.protocols.registry import market_models
from keeper.log import redact_url
from keeper.log_config import LogConfig
from keeper.units import WAD, format_fixed



class ChainConfig(_Model):
    """``rpc_url`` (one endpoint) or ``rpc_urls`` (several, with failover); after validation
    both are set: ``rpc_urls`` lists every endpoint, ``rpc_url`` is the first."""

    rpc_url: RpcUrl | None = None
    rpc_urls: tuple[RpcUrl, ...] = ()
    max_head_lag_blocks: PositiveInt = 5  # an endpoint further behind the best head is not read
    chain_id: PositiveInt | None = None
    multicall3: Address = MULTICALL3
    max_calls_per_multicall: PositiveInt = 2000
    logs_max_range: PositiveInt = 10_000
    request_timeout_s: Seconds = 10.0
    block_poll_interval_s: Seconds = 0.5
    ws_url: RpcUrl | None = None  # ws(s)://: new heads pushed (eth_subscribe newHeads); polling stays the fallback

    @field_validator("ws_url")
    @classmethod
    def _websocket(cls, value: Secret | None) -> Secret | None:
        if value is not None and not value.reveal().lower().startswith(("ws://", "wss://")):
            raise _fail("must be a ws:// or wss:// URL (the node's WebSocket endpoint)")
        return value

    @model_validator(mode="after")
    def _one_or_several(self) -> ChainConfig:
        if self.rpc_url is not None and self.rpc_urls:
            raise _fail("give rpc_url (one endpoint) or rpc_urls (several), not both", field="rpc_urls")
        if self.rpc_url is None and not self.rpc_urls:
            raise _fail(f"missing required key (or set {ENV_RPC_URL} or {ENV_RPC_URLS} in the environment)",
                        field="rpc_url")
        if len({u.reveal() for u in self.rpc_urls}) < len(self.rpc_urls):
            raise _fail("an endpoint is given twice", field="rpc_urls")
        urls = self.rpc_urls or (self.rpc_url,)
        object.__setattr__(self, "rpc_urls", urls)  # frozen model: filled once, here
        object.__setattr__(self, "rpc_url", urls[0])
        return self


class MonitorConfig(_Model):
    """Thresholds are wad ints (``watch_hf == 1_500_000_000_000_000_000``)."""

    scan_interval_s: Seconds = 15.0
    index_interval_s: Seconds = 60.0
    watch_hf: HealthFactor = 3 * WAD // 2
    at_risk_hf: HealthFactor = 11 * WAD // 10
    liquidation_hf: HealthFactor = WAD
    price_heartbeat_s: PositiveInt = 86_400
    stale_head_s: Seconds = 60.0  # no new block for this long: /healthz 503 and an operator alert
    heartbeats: dict[str, PositiveInt] = Field(default_factory=dict)

    @field_validator("heartbeats")
    @classmethod
    def _unique_symbols(cls, value: dict[str, int]) -> dict[str, int]:
        if len({symbol.upper() for symbol in value}) < len(value):
            raise _fail("a symbol is given twice (symbols ignore case)")
        return value  # kept as written: wstETH stays wstETH

    @model_validator(mode="after")
    def _ordered(self) -> MonitorConfig:
        pairs = (("at_risk_hf", "liquidation_hf"), ("watch_hf", "at_risk_hf"))
        for high, low in pairs:
            hv, lv = getattr(self, high), getattr(self, low)
            if hv <= lv:
                shown = f"({format_fixed(lv, 18)}), got {format_fixed(hv, 18)}"
                raise _fail(f"must be greater than monitor.{low} {shown}", field=high)
        return self

    def heartbeat_for(self, symbol: str) -> int:
        """Max age in seconds of the price feed of ``symbol`` (case-insensitive)."""
        if symbol in self.heartbeats:
            return self.heartbeats[symbol]
        upper = {s.upper(): v for s, v in self.heartbeats.items()}
        return upper.get(symbol.upper(), self.price_heartbeat_s)


class MetricsConfig(_Model):
    """``[metrics]``: Prometheus /metrics and /healthz (keeper.metrics); off unless ``listen``."""

    listen: str | None = Field(default=None, pattern=r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):[0-9]{1,5}$")
    max_tick_age_s: Seconds = 120.0  # /healthz: 503 when no tick succeeded for this long

    @field_validator("listen")
    @classmethod
    def _port(cls, value: str | None) -> str | None:
        if value is not None and int(value.rpartition(":")[2]) > 65535:
            raise _fail(f"not a port: {value!r}")
        return value


class StoreConfig(_Model):
    path: Path = Field(default=Path("keeper.sqlite"), validate_default=True)

    @field_validator("path", mode="before")
    @classmethod
    def _relative_to_config(cls, value: Any, info: ValidationInfo) -> Path:
        return config_path(value, info)





MARKET_MODELS: dict[str, type[_Model]] = market_models()  # one per registered protocol
Market = Annotated[Union[tuple(MARKET_MODELS.values())],  # noqa: UP007
                   Field(discriminator="protocol")]


class Config(_Model):
    mode: Literal["dry_run", "live"] = "dry_run"
    chain: ChainConfig
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    markets: tuple[Market, ...] = Field(min_length=1)
    protect: tuple[ProtectConfig, ...] = ()
    liquidator: LiquidatorConfig = Field(default_factory=LiquidatorConfig)
    backrun: BackrunConfig = Field(default_factory=BackrunConfig)
    prices: PricesConfig = Field(default_factory=PricesConfig)
    dex: DexConfig = Field(default_factory=DexConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    notify: NotifyChannels = ()
    notify_rules: NotifyRules = Field(default_factory=NotifyRules)
    log: LogConfig = Field(default_factory=LogConfig)
    private_key: Secret | None = None  # from KEEPER_PRIVATE_KEY only
    _notify_secrets: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def notify_secrets(self) -> dict[str, Any]:
        """Per channel name: the secrets its *_env keys named (resolved by load_config)."""
        return self._notify_secrets

    @model_validator(mode="before")
    @classmethod
    def _defaults_in_context(cls, data: Any) -> Any:
        """Name unnamed markets; validate a missing [store] so its path is made absolute."""
        if not isinstance(data, dict):
            return data
        data = {"store": {}, **data}
        markets = data.get("markets")
        if isinstance(markets, list):
            data["markets"] = [
                {**m, "name": f"{m.get('protocol')}-{i}"}
                if isinstance(m, dict) and "name" not in m
                else m
                for i, m in enumerate(markets)
            ]
        return data

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: dict[str, int] = {}
        for i, market in enumerate(self.markets):
            if market.name in seen:
                also = f"(also markets[{seen[market.name]}].name)"
                raise _fail(f"duplicate market name {market.name!r} {also}", f"markets[{i}].name")
            seen[market.name] = i
        for i, rule in enumerate(self.protect):
            if rule.market is not None and rule.market not in seen:
                raise _fail(f"no configured market is named {rule.market!r} (markets: "
                            f"{', '.join(sorted(seen))})", f"protect[{i}].market")
            if any(k == "deleverage" for k, _ in rule.parsed_actions()) and not self.dex.configured:
                raise _fail("a deleverage action sells collateral on [dex]: set uniswap_v3_factory, "
                            "uniswap_v3_router and uniswap_v3_quoter", f"protect[{i}].actions")
        if self.backrun.enabled and (self.chain.ws_url is None or not self.liquidator.enabled):
            raise _fail("a backrun watches pending transactions over WebSocket and liquidates: set "
                        "[chain] ws_url and [liquidator] enabled = true", "backrun.enabled")
        if self.liquidator.contract is not None and not self.dex.configured:
            raise _fail("a capital-free liquidator needs [dex] uniswap_v3_factory, uniswap_v3_router "
                        "and uniswap_v3_quoter", "liquidator.contract")
        return self

    @property
    def gas_coin(self) -> str:
        """Symbol of the gas coin's wrapped token: [prices] gas_coin, else the liquidator's."""
        return (self.prices.gas_coin or self.liquidator.gas_price_asset).upper()

    def secrets(self) -> list[str]:
        """Values to hand to ``keeper.log.register_secret`` at start-up."""
        out = [s.reveal() for s in (*self.chain.rpc_urls, self.chain.ws_url, self.backrun.relay_url,
                                    self.private_key) if s is not None]
        for channel in self._notify_secrets.values():
            out.extend(channel.reveal_all())
        return out


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, merge with the environment and validate. Raises ConfigError on any problem."""
    env = os.environ if env is None else env
    file = Path(path)
    raw = _read_toml(file)
    where = str(file)

    bad = _find_key(raw, "private_key")
    if bad is not None:
        fix = f"remove it and set {ENV_PRIVATE_KEY} in the environment"
        raise ConfigError(f"private keys are never read from the file: {fix}", path=where, key=bad)

    env_url = env.get(ENV_RPC_URL, "").strip()
    env_urls = [u.strip() for u in env.get(ENV_RPC_URLS, "").split(",") if u.strip()]
    if env_url and env_urls:
        raise ConfigError(f"set {ENV_RPC_URL} or {ENV_RPC_URLS}, not both", path="environment",
                          key=ENV_RPC_URLS)
    if env_url or env_urls:
        chain = raw.setdefault("chain", {})
        if isinstance(chain, dict):  # otherwise validation says "must be a table"
            chain.pop("rpc_url", None)
            chain.pop("rpc_urls", None)
            chain.update({"rpc_url": env_url} if env_url else {"rpc_urls": env_urls})
    env_key = env.get(ENV_PRIVATE_KEY, "").strip()
    if env_key:
        if not re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", env_key):
            what = "not a private key (expected 64 hex digits, with or without 0x)"
            raise ConfigError(what, path="environment", key=ENV_PRIVATE_KEY)
        raw["private_key"] = Secret(env_key if env_key.startswith("0x") else "0x" + env_key)

    try:
        cfg = Config.model_validate(raw, context={"base_dir": file.parent.resolve()})
    except ValidationError as e:
        errors = e.errors()
        # pydantic also calls a list "too short" when its items failed: say only why
        inner = {tuple(err["loc"][:1]) for err in errors if len(err["loc"]) > 1}
        errors = [r for r in errors if r["type"] != "too_short" or tuple(r["loc"]) not in inner]
        problems = [_explain(err, from_env=bool(env_url or env_urls)) for err in errors]
        key, message = problems[0]
        for other_key, other_message in problems[1:]:
            message += f"\n{where}: {other_key}: {other_message}"
        raise ConfigError(message, path=where, key=key) from None
    cfg._notify_secrets = resolve_secrets(cfg.notify, env)  # a missing variable: ConfigError
    return cfg


def describe(cfg: Config) -> dict[str, Any]:
    """A summary for the start-up log line: no secrets, the RPC URL without its key."""
    hf = ("watch_hf", "at_risk_hf", "liquidation_hf")
    return {
        "mode": cfg.mode,
        "rpc_url": redact_url(cfg.chain.rpc_urls[0].reveal()),
        "rpc_urls": [redact_url(u.reveal()) for u in cfg.chain.rpc_urls],
        "chain_id": cfg.chain.chain_id,
        "store": str(cfg.store.path),
        "markets": [m.model_dump(mode="json") for m in cfg.markets],
        "thresholds": {k: format_fixed(getattr(cfg.monitor, k), 18) for k in hf},
        "signer": cfg.private_key is not None,
    }


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", path=str(file)) from None
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ConfigError(f"cannot read config file: {reason}", path=str(file)) from None
    try:
        # Decimal keeps floats exact, so the float check can quote what was written.
        return tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"invalid TOML: {e}", path=str(file)) from None


def _find_key(data: Any, name: str, prefix: str = "") -> str | None:
    """Key path of the first key called ``name`` anywhere in the parsed file."""
    items = enumerate(data) if isinstance(data, list) else []
    for k, v in data.items() if isinstance(data, dict) else items:
        here = f"{prefix}[{k}]" if isinstance(k, int) else f"{prefix}.{k}" if prefix else k
        if k == name:
            return here
        if found := _find_key(v, name, here):
            return found
    return None


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i > 0 and isinstance(loc[i - 1], int) and (part in MARKET_MODELS
                                                         or part in CHANNEL_MODELS):
            continue  # the discriminator tag pydantic puts in the location
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Config
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None and part in MARKET_MODELS:
            model = MARKET_MODELS[part]
            continue
        if model is None and part in CHANNEL_MODELS:
            model = CHANNEL_MODELS[part]
            continue
        field = model.model_fields.get(part) if model else None
        ann = field.annotation if field else None
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return model


def _all_fields() -> dict[str, str]:
    """Every key name -> the table it belongs in, to say where a misplaced key goes."""
    tables = {"chain": ChainConfig, "monitor": MonitorConfig, "store": StoreConfig,
              "executor": ExecutorConfig, "liquidator": LiquidatorConfig, "dex": DexConfig,
              "metrics": MetricsConfig, "prices": PricesConfig}
    out = {name: f"[{t}]" for t, m in tables.items() for name in m.model_fields}
    out.update({n: "[[markets]]" for m in MARKET_MODELS.values() for n in m.model_fields})
    return out


def _unknown_key(loc: tuple[Any, ...]) -> str:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    names = [n for n in (model.model_fields if model else ()) if n != "private_key"]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r} (did you mean {close[0]!r}?)"
    elsewhere = _all_fields().get(key)
    if elsewhere:
        return f"unknown key {key!r} here (it belongs in {elsewhere})"
    return f"unknown key {key!r}" + (f" (known keys: {', '.join(names)})" if names else "")


_SECRET_KEYS = {"rpc_url", "rpc_urls", "private_key"}  # their input is never quoted
_MESSAGES = {  # pydantic error type -> plain words (ctx fills the braces)
    **dict.fromkeys(("int_type", "int_parsing", "int_from_float"), "must be a whole number"),
    **dict.fromkeys(("model_type", "dict_type"), "must be a table"),
    **dict.fromkeys(("list_type", "tuple_type"), "must be an array of tables"),
    "literal_error": "must be {expected}",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "string_type": "must be a string",
    "string_pattern_mismatch": "must be 1-64 letters, digits, '_', '-' or '.'",
    "string_pattern_mismatch:listen": "must be host:port, e.g. \"127.0.0.1:9464\"",
}


def _explain(err: Any, *, from_env: bool) -> tuple[str, str]:
    """One pydantic error -> (key path, plain words)."""
    loc, kind, ctx = tuple(err["loc"]), err["type"], err.get("ctx") or {}
    value = err.get("input")
    shown = "" if _SECRET_KEYS & {str(part) for part in loc} else f", got {value!r}"
    if kind == "keeper":
        message = ctx["message"]
        if "field" in ctx:  # raised by a model validator about one of its fields
            return ".".join(filter(None, (_key_path(loc), ctx["field"]))), message
    elif kind == "missing":
        message = "missing required key"
        if loc == ("chain", "rpc_url") or loc == ("chain",):
            message += f" (or set {ENV_RPC_URL} in the environment)"
    elif kind == "extra_forbidden":
        message = _unknown_key(loc)
    elif kind == "union_tag_invalid":
        tag = "kind" if loc and loc[0] == "notify" else "protocol"
        message = f"unknown {tag} {ctx['tag']!r} (expected one of: {ctx['expected_tags']})"
        loc = (*loc, tag)
    elif kind == "union_tag_not_found":
        tag = "kind" if loc and loc[0] == "notify" else "protocol"
        message, loc = "missing required key", (*loc, tag)
    elif kind == "too_short" and loc == ("markets",):
        message = "at least one [[markets]] table is required"
    elif f"{kind}:{loc[-1] if loc else ''}" in _MESSAGES:
        message = _MESSAGES[f"{kind}:{loc[-1]}"] + shown
    elif kind in _MESSAGES:
        message = _MESSAGES[kind].format(**ctx) + shown
    else:
        message = err["msg"][:1].lower() + err["msg"][1:] + shown
    key = _key_path(loc)
    if from_env and loc[:2] in (("chain", "rpc_url"), ("chain", "rpc_urls")):
        env_name = ENV_RPC_URL if loc[1] == "rpc_url" else ENV_RPC_URLS
        key = f"{env_name} (overrides {key})"
    return key, message
