"""Deleverage on an Aave V3 3.6 Pool (the one `keeper devnet up` and `make demo` deploy, compiled
from npm @aave-dao/aave-v3-origin): the 3.0.2 decline and stop-loss tests of test_deleverage.py
and the boost test of test_boost.py run here unchanged on their own anvil with a 3.6 deployment. Sized with 3.6's rounding
(keeper.protocols.aave_v3.deleverage36): the contract's ``Deleveraged`` events, the Pool's own
health factor inside the transaction, land within 0.5% above the target; no liquidation."""

from __future__ import annotations

from tests.integration.own_anvil import fixtures
from tests.integration.test_boost import test_a_rise_above_boost_above_hf_is_re_leveraged_to_the_target  # noqa: F401
from tests.integration.test_deleverage import (  # noqa: F401  (collected here, on this module's 3.6 devnet)
    test_decline_is_deleveraged_to_the_target_and_never_liquidatable,
    test_stop_loss_closes_the_debt_when_the_price_crosses_and_leaves_the_rest,
)

anvil, devnet, w3 = fixtures("3.6")
