"""Aave V3 3.2+ reverts are custom errors (``protocol/libraries/helpers/Errors.sol`` of npm
@aave-dao/aave-v3-origin 3.6.0), not the numeric strings of 3.0.x: their selectors, decoded for
the guard and the logs. ``decode(data)`` -> ``"MustNotLeaveDust()"`` or None.

The list is Errors.sol's 92 errors; tests/unit/test_aave36.py checks it against the ABI that
solc builds from the package (build/aave36.json).
"""

from __future__ import annotations

from eth_abi import decode as abi_decode
from eth_utils import keccak

SIGNATURES = """
    AclAdminCannotBeZero() AddressesProviderAlreadyAdded() AddressesProviderNotRegistered()
    AssetNotBorrowableInIsolation() AssetNotListed() BorrowCapExceeded() BorrowingNotEnabled()
    CallerMustBePool() CallerNotAToken() CallerNotAssetListingOrPoolAdmin() CallerNotPoolAdmin()
    CallerNotPoolConfigurator() CallerNotPoolOrEmergencyAdmin() CallerNotPositionManager()
    CallerNotRiskOrPoolAdmin() CallerNotRiskOrPoolOrEmergencyAdmin() CallerNotUmbrella()
    CollateralCannotBeLiquidated() CollateralCannotCoverNewBorrow() DebtCeilingExceeded()
    DebtCeilingNotZero() EModeCategoryReserved() FlashloanDisabled() FlashloanPremiumInvalid()
    HealthFactorLowerThanLiquidationThreshold() HealthFactorNotBelowThreshold()
    InconsistentEModeCategory() InconsistentFlashloanParams() InconsistentParamsLength()
    InvalidAddressesProvider() InvalidAddressesProviderId() InvalidAmount() InvalidBorrowCap()
    InvalidBurnAmount() InvalidCollateralInEmode(address,uint256) InvalidDebtCeiling()
    InvalidDebtInEmode(address,uint256) InvalidDecimals() InvalidEmodeCategoryParams()
    InvalidExpiration() InvalidFlashloanExecutorReturn() InvalidFreezeState()
    InvalidGracePeriod() InvalidInterestRateModeSelected() InvalidLiquidationBonus()
    InvalidLiquidationProtocolFee() InvalidLiquidationThreshold() InvalidLtv()
    InvalidLtvzeroState() InvalidMaxRate() InvalidMintAmount() InvalidOptimalUsageRatio()
    InvalidReserveFactor() InvalidReserveIndex() InvalidReserveParams() InvalidSignature()
    InvalidSupplyCap() LiquidationGraceSentinelCheckFailed() LtvValidationFailed()
    MustBeEmodeCollateral(address,uint256) MustNotLeaveDust() NoDebtOfSelectedType()
    NoExplicitAmountToRepayOnBehalf() NoMoreReservesAllowed() NotBorrowableInEMode()
    NotContract() NotEnoughAvailableUserBalance() OperationNotSupported()
    PoolAddressesDoNotMatch() PriceOracleSentinelCheckFailed() ReserveAlreadyAdded()
    ReserveAlreadyInitialized() ReserveDebtNotZero() ReserveFrozen() ReserveInactive()
    ReserveLiquidityNotZero() ReserveNotInDeficit() ReservePaused() SelfLiquidation()
    SiloedBorrowingViolation() Slope2MustBeGteSlope1() SpecifiedCurrencyNotBorrowedByUser()
    SupplyCapExceeded() SupplyToAToken() UnderlyingBalanceZero() UnderlyingCannotBeRescued()
    UnderlyingClaimableRightsNotZero() UserCannotHaveDebt() UserInIsolationModeOrLtvZero()
    VariableDebtSupplyNotZero() WithdrawToAToken() ZeroAddressNotValid()
""".split()  # noqa: SIM905

# keeper's own KeeperProtection.sol (deleverage), shown as "KeeperProtection.<error>"
PROTECTION = ("NotAllowed(address,address)", "UnexpectedCallback(address)", "BadFlashSource(uint8)",
              "SlippageTooHigh(uint256,uint256)", "HealthFactorTooLow(uint256,uint256)", "NoReserve(address)",
              "TokenCallFailed(address)")

SELECTORS: dict[bytes, str] = {keccak(text=s)[:4]: s for s in SIGNATURES}
SELECTORS.update({keccak(text=s)[:4]: "KeeperProtection." + s for s in PROTECTION})


PREFIX = "Aave error"  # how the guard and the logs show them


def decode(data: bytes) -> str | None:
    """``Name(args)`` of an Aave 3.6 custom error, with its arguments; None for other data."""
    sig = SELECTORS.get(bytes(data[:4]))
    if sig is None:
        return None
    types = sig[sig.index("(") + 1:-1]
    if not types:
        return sig
    try:
        values = abi_decode(types.split(","), bytes(data[4:]))
    except Exception:  # noqa: BLE001  truncated revert data: the name alone still helps
        return sig
    return f"{sig[:sig.index('(')]}({', '.join(str(v) for v in values)})"
