"""The health of each node endpoint: errors, latency and head lag scored; backoff; log pacing.

Kept apart from ``keeper.chain.rpc`` (which does the IO) so the rules read in one place:

* **score**: an exponentially weighted latency plus the recent error rate (also a moving
  average) times ``ERROR_COST_S``; lower is better. An endpoint not yet measured scores 0,
  so each one gets tried. Reads go to the lowest score among endpoints that are *up*, on the
  right chain and not lagging (head more than ``max_lag`` blocks behind the best head
  seen); lagging endpoints are used only when nothing else is left.
* **down**: after ``DOWN_AFTER`` failures in a row an endpoint rests (no traffic) for a
  backoff that doubles from ``BACKOFF_S`` up to ``BACKOFF_MAX_S``. When the rest is over it
  is tried again, and its chain id is checked before it serves a read (a *reconnect*).
* **wrong chain**: an endpoint whose ``eth_chainId`` is not the expected one is taken out,
  rests like a down one, and is checked again after its rest.
* **log pacing** (:func:`paced`): a repeated event is logged the 1st, 2nd, 4th, 8th...
  time, so a node down for an hour costs a dozen lines, not thousands.

Endpoints are named by :func:`endpoint_label` (index and host, never the path, query or
user info, which may carry an API key).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

DOWN_AFTER = 3  # failures in a row before an endpoint rests
BACKOFF_S = 0.25
BACKOFF_MAX_S = 2.0
ERROR_COST_S = 1.0
_ALPHA = 0.2  # weight of the newest sample in the moving averages


def endpoint_label(index: int, url: str) -> str:
    """``1:eth-mainnet.g.alchemy.com``: index and host only (no credentials, no path)."""
    try:
        host = urlsplit(url).hostname or "?"
    except ValueError:
        host = "?"
    return f"{index}:{host}"


def paced(count: int) -> bool:
    """True the 1st, 2nd, 4th, 8th... time: log once, then at a decaying rate."""
    return count > 0 and count & (count - 1) == 0


@dataclass
class Endpoint:
    index: int
    label: str
    provider: Any  # web3's AsyncHTTPProvider, or anything with make_request/make_batch_request
    latency_s: float = 0.0
    error_rate: float = 0.0
    failures_in_row: int = 0
    rest_until: float = 0.0  # time.monotonic(); no traffic before
    down: bool = False
    wrong_chain: int | None = None  # the chain id it reported, when wrong
    checked: bool = False  # chain id checked since start-up / the last reconnect
    head: int = -1
    # cumulative, for metrics
    requests: int = 0
    errors: int = 0
    latency_sum_s: float = 0.0
    last_error: str = ""
    events: dict[str, int] = field(default_factory=dict)

    def usable(self, now: float) -> bool:
        return now >= self.rest_until

    def lag(self, best_head: int) -> int:
        return max(0, best_head - self.head) if self.head >= 0 and best_head >= 0 else 0

    def score(self) -> float:
        """Seconds a read is expected to cost: a failure costs about ERROR_COST_S (a
        timeout or a retry elsewhere), so a flaky fast node ranks below a clean slow one."""
        return self.latency_s + ERROR_COST_S * self.error_rate

    def succeeded(self, latency_s: float) -> bool:
        """Record a good answer. True when this ends a down spell (the caller logs it)."""
        self.requests += 1
        self.latency_sum_s += latency_s
        first = self.latency_s == 0.0
        self.latency_s = latency_s if first else (1 - _ALPHA) * self.latency_s + _ALPHA * latency_s
        self.error_rate *= 1 - _ALPHA
        self.failures_in_row = 0
        recovered, self.down = self.down, False
        return recovered

    def failed(self, reason: str, now: float) -> bool:
        """Record a failure. True when this one takes the endpoint down (the caller logs it)."""
        self.requests += 1
        self.errors += 1
        self.last_error = reason
        self.error_rate = (1 - _ALPHA) * self.error_rate + _ALPHA
        self.failures_in_row += 1
        if self.failures_in_row < DOWN_AFTER:
            return False
        self.rest(now)
        went_down, self.down = not self.down, True
        return went_down

    def rest(self, now: float) -> None:
        extra = self.failures_in_row - DOWN_AFTER if self.failures_in_row >= DOWN_AFTER else 0
        self.rest_until = now + min(BACKOFF_MAX_S, BACKOFF_S * 2 ** min(extra, 16))
        self.checked = False  # back from a rest: a reconnect, check the chain id again

    def count(self, event: str) -> int:
        """Count one more ``event`` of this endpoint (for :func:`paced` logging)."""
        self.events[event] = self.events.get(event, 0) + 1
        return self.events[event]

    def seen_head(self, head: int) -> None:
        self.head = max(self.head, head)


def order(endpoints: list[Endpoint], max_lag: int, now: float | None = None) -> list[Endpoint]:
    """The endpoints to try, best first: resting ones left out; lagging ones and those on
    the wrong chain last (those only after a rest, to be checked again)."""
    now = time.monotonic() if now is None else now
    best = max((e.head for e in endpoints if e.wrong_chain is None), default=-1)
    live = [e for e in endpoints if e.usable(now)]
    return sorted(live, key=lambda e: (e.wrong_chain is not None, e.lag(best) > max_lag,
                                       e.score(), e.index))
