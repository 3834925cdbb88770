"""What a deployed devnet is: ``DevnetInfo``, saved as ``state.json`` + ``keeper.toml``.

The state dir (default ``.devnet/`` in the working directory, gitignored) holds:

* ``state.json``: every address (see ``DevnetInfo``), the anvil PID and port, so ``down``
  and ``price`` work from another process;
* ``keeper.toml``: a keeper config pointing at the devnet market, usable as is;
* ``anvil.log``: anvil's output.

state.json keys: ``rpc_url chain_id seed anvil_pid anvil_port deploy_block deployer liquidator
treasury spare lenders borrowers positions pool_addresses_provider pool pool_configurator
acl_manager oracle data_provider multicall3 tokens decimals feeds a_tokens variable_debt_tokens
stable_debt_tokens rate_strategies emode_categories dev_keys aave_version
liquidation_data_provider rule_borrowers``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from keeper.errors import DevnetError

DEFAULT_STATE_DIR = Path(".devnet")
STATE_FILE = "state.json"
CONFIG_FILE = "keeper.toml"
ANVIL_LOG = "anvil.log"


@dataclass(frozen=True)
class DevnetInfo:
    """A deployed devnet market. Addresses are EIP-55; dicts are keyed by token symbol."""

    rpc_url: str
    chain_id: int
    seed: int
    deploy_block: int
    deployer: str  # anvil account 0: owns the feeds, holds every Aave admin role
    liquidator: str  # anvil account 1: funded, no position
    treasury: str  # anvil account 2: Aave treasury of every reserve
    spare: tuple[str, ...]  # anvil accounts 3..5: funded, untouched
    pool_addresses_provider: str
    pool: str
    pool_configurator: str
    acl_manager: str
    oracle: str
    data_provider: str
    multicall3: str
    tokens: dict[str, str]
    decimals: dict[str, int]
    feeds: dict[str, str]
    a_tokens: dict[str, str]
    variable_debt_tokens: dict[str, str]
    stable_debt_tokens: dict[str, str]
    rate_strategies: dict[str, str]
    emode_categories: dict[int, str]  # id -> label
    lenders: tuple[str, ...]  # supply only: accounts without debt
    borrowers: tuple[str, ...]
    # Per borrower: {index, address, emode, collateral {sym: units}, debt {sym: units}, target_hf_bps}
    positions: tuple[dict[str, Any], ...] = ()
    # Throwaway keys of the public anvil mnemonic (deployer, liquidator); devnet only.
    dev_keys: dict[str, str] = field(default_factory=dict)
    anvil_pid: int | None = None
    anvil_port: int | None = None
    aave_version: str = "3.0.2"  # "3.0.2" or "3.6"
    liquidation_data_provider: str = ""  # 3.6 helpers/LiquidationDataProvider
    rule_borrowers: dict[str, str] = field(default_factory=dict)  # 3.6: Aave 3.3-rule label -> address

    def symbol_of(self, asset: str) -> str:
        for symbol, addr in self.tokens.items():
            if addr.lower() == asset.lower():
                return symbol
        raise KeyError(asset)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["emode_categories"] = {str(k): v for k, v in self.emode_categories.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DevnetInfo:
        names = {f.name for f in fields(cls)}
        missing = {f.name for f in fields(cls) if f.name not in data} - {
            "positions", "dev_keys", "anvil_pid", "anvil_port",
            "aave_version", "liquidation_data_provider", "rule_borrowers",
        }  # fmt: skip
        if missing:
            raise DevnetError(f"devnet state lacks {sorted(missing)}")
        kw = {k: v for k, v in data.items() if k in names}
        for k in ("spare", "lenders", "borrowers", "positions"):
            kw[k] = tuple(kw.get(k, ()))
        kw["emode_categories"] = {int(k): v for k, v in kw["emode_categories"].items()}
        return cls(**kw)


def write_state(info: DevnetInfo, state_dir: Path = DEFAULT_STATE_DIR) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info.to_json(), indent=1) + "\n")
    tmp.replace(path)
    return path


def read_state(state_dir: Path = DEFAULT_STATE_DIR) -> DevnetInfo:
    path = state_dir / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise DevnetError(f"no devnet state at {path}: run `keeper devnet up` first") from e
    except (OSError, ValueError) as e:
        raise DevnetError(f"cannot read devnet state {path}: {e}") from e
    return DevnetInfo.from_json(data)


def chain_config_toml(info: DevnetInfo) -> str:
    """``[chain]`` and ``[prices]`` of this devnet: the node, and the USD feeds of its tokens
    (PriceFeed.sol, the stand-in for Chainlink aggregators), so a keeper that watches only
    Morpho Blue (whose oracles price nothing in USD) can still price its gas."""
    feeds = ", ".join(f'{s} = "{a}"' for s, a in sorted(info.feeds.items()))
    return (
        "# Written by `keeper devnet up`: a local anvil with real Aave V3 and Morpho Blue markets\n"
        "# and a Compound V3 stand-in (CometStandIn). To send: mode = \"live\" at the top and\n"
        "# KEEPER_PRIVATE_KEY=$(keeper devnet key) in the environment (default: dry_run).\n"
        "[chain]\n"
        f'rpc_url = "{info.rpc_url}"\n'
        f"chain_id = {info.chain_id}\n"
        "\n"
        "[prices]\n"
        'gas_coin = "WETH"\n'
        f"feeds = {{ {feeds} }}\n"
    )


def keeper_config_toml(info: DevnetInfo, start_block: int = 0) -> str:
    """The keeper config for this devnet, taken as is by ``keeper run --config``."""
    return (
        chain_config_toml(info)
        + "\n"
        "[[markets]]\n"
        'protocol = "aave_v3"\n'
        'name = "devnet"\n'
        f'pool_addresses_provider = "{info.pool_addresses_provider}"\n'
        f"start_block = {start_block}\n"
    )


def write_keeper_config(info: DevnetInfo, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(keeper_config_toml(info))
    return path
