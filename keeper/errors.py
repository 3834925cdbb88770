"""The whole exception tree of keeper.

::

    KeeperError
    ├── ConfigError          start-up; the message names the file and the key; exit code 2
    ├── SourceError          a chain read failed or is inconsistent; skip, retry next tick
    │   └── StalePriceError  a feed is stale, zero or negative: positions on it are unreliable
    ├── DevnetError          the local chain could not be started, deployed or driven
    ├── ExecutionError       (issue 3) a decision could not be carried out
    │   ├── SimulationReverted
    │   └── TxTimeout
    └── NotificationError    (issue 3) a channel refused an alert

Library errors are wrapped where they enter (``raise SourceError(...) from e``) and
logged once, where they are handled.
"""

from __future__ import annotations


class KeeperError(Exception):
    """Root of every error keeper raises on purpose."""


class ConfigError(KeeperError):
    """Bad configuration. The message names the file, the key and what is wrong."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None):
        self.path = path
        self.key = key
        where = ": ".join(p for p in (path, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class SourceError(KeeperError):
    """A read from the chain failed or returned something inconsistent."""


class StalePriceError(SourceError):
    """A price feed is older than its heartbeat, or its answer is zero or negative."""


class DevnetError(KeeperError):
    """The local devnet could not be started, deployed or driven."""


class ExecutionError(KeeperError):
    """A decision could not be carried out."""


class SimulationReverted(ExecutionError):
    """eth_call of the transaction reverted: nothing was sent."""


class TxTimeout(ExecutionError):
    """A sent transaction was not mined in time."""


class NotificationError(KeeperError):
    """A notification channel refused or failed to take an alert."""
