// SPDX-License-Identifier: MIT
pragma solidity 0.8.19;

/// @title CometStandIn: a STAND-IN for Compound III (Comet), for keeper's tests and devnet only
/// @notice This is NOT Compound's Comet and must never hold real funds. No npm or PyPI package
///         ships Comet's bytecode, so keeper's local devnet deploys this contract in its place.
///         It implements the part of Comet's public interface and math that keeper uses (the
///         `IComet` interface below, exported as contracts/abi/Comet.json), written from
///         Comet's published source (compound-finance/comet: Comet.sol, CometCore.sol,
///         CometMath.sol, CometExt.sol) with the same function signatures, structs, events,
///         custom errors, scales (BASE_INDEX_SCALE 1e15, FACTOR_SCALE 1e18, 8-decimal prices)
///         and rounding (principal of a borrow rounds up, signed division truncates toward
///         zero). keeper's Python is written against the REAL Comet interface: every function
///         it calls exists on a real Comet with the same selector and return layout.
/// @dev Left out, because keeper does not use them: the proxy, configurator and extension
///      delegate, rewards tracking (tracking indexes stay 0), permissions other than `allow`,
///      `isAllowed`, `hasPermission` and `withdrawFrom` (what keeper's deleverage uses; no
///      `allowBySig`, `supplyFrom`, `transferFrom`), pausing (flags stay 0), collateral transfers,
///      `withdrawReserves`, liquidator points and the reentrancy guard. Asset configuration is
///      kept in storage instead of packed immutables, with the same 4-decimal factors and
///      whole-unit supply caps that Comet's packing keeps.

interface ICometToken {
  function decimals() external view returns (uint8);
  function balanceOf(address account) external view returns (uint256);
  function transfer(address to, uint256 amount) external returns (bool);
  function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

interface ICometPriceFeed {
  function decimals() external view returns (uint8);
  function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80);
}

/// @notice The subset of Comet's interface (CometMainInterface + CometExtInterface) keeper uses.
interface IComet {
  struct AssetInfo {
    uint8 offset;
    address asset;
    address priceFeed;
    uint64 scale;
    uint64 borrowCollateralFactor;
    uint64 liquidateCollateralFactor;
    uint64 liquidationFactor;
    uint128 supplyCap;
  }

  struct TotalsBasic {
    uint64 baseSupplyIndex;
    uint64 baseBorrowIndex;
    uint64 trackingSupplyIndex;
    uint64 trackingBorrowIndex;
    uint104 totalSupplyBase;
    uint104 totalBorrowBase;
    uint40 lastAccrualTime;
    uint8 pauseFlags;
  }

  event Supply(address indexed from, address indexed dst, uint256 amount);
  event Transfer(address indexed from, address indexed to, uint256 amount);
  event Withdraw(address indexed src, address indexed to, uint256 amount);
  event Approval(address indexed owner, address indexed spender, uint256 amount); // CometExt
  event SupplyCollateral(address indexed from, address indexed dst, address indexed asset, uint256 amount);
  event TransferCollateral(address indexed from, address indexed to, address indexed asset, uint256 amount);
  event WithdrawCollateral(address indexed src, address indexed to, address indexed asset, uint256 amount);
  event AbsorbDebt(address indexed absorber, address indexed borrower, uint256 basePaidOut, uint256 usdValue);
  event AbsorbCollateral(address indexed absorber, address indexed borrower, address indexed asset, uint256 collateralAbsorbed, uint256 usdValue);
  event BuyCollateral(address indexed buyer, address indexed asset, uint256 baseAmount, uint256 collateralAmount);

  function baseToken() external view returns (address);
  function baseTokenPriceFeed() external view returns (address);
  function baseScale() external view returns (uint256);
  function decimals() external view returns (uint8);
  function numAssets() external view returns (uint8);
  function storeFrontPriceFactor() external view returns (uint256);
  function targetReserves() external view returns (uint256);
  function baseBorrowMin() external view returns (uint256);
  function supplyKink() external view returns (uint256);
  function supplyPerSecondInterestRateSlopeLow() external view returns (uint256);
  function supplyPerSecondInterestRateSlopeHigh() external view returns (uint256);
  function supplyPerSecondInterestRateBase() external view returns (uint256);
  function borrowKink() external view returns (uint256);
  function borrowPerSecondInterestRateSlopeLow() external view returns (uint256);
  function borrowPerSecondInterestRateSlopeHigh() external view returns (uint256);
  function borrowPerSecondInterestRateBase() external view returns (uint256);
  function getAssetInfo(uint8 i) external view returns (AssetInfo memory);
  function getAssetInfoByAddress(address asset) external view returns (AssetInfo memory);
  function getPrice(address priceFeed) external view returns (uint256);
  function totalsBasic() external view returns (TotalsBasic memory);
  function totalsCollateral(address asset) external view returns (uint128 totalSupplyAsset, uint128 _reserved);
  function userBasic(address account) external view returns (int104 principal, uint64 baseTrackingIndex, uint64 baseTrackingAccrued, uint16 assetsIn, uint8 _reserved);
  function userCollateral(address account, address asset) external view returns (uint128 balance, uint128 _reserved);
  function balanceOf(address account) external view returns (uint256);
  function borrowBalanceOf(address account) external view returns (uint256);
  function collateralBalanceOf(address account, address asset) external view returns (uint128);
  function totalSupply() external view returns (uint256);
  function totalBorrow() external view returns (uint256);
  function getUtilization() external view returns (uint256);
  function getSupplyRate(uint256 utilization) external view returns (uint64);
  function getBorrowRate(uint256 utilization) external view returns (uint64);
  function getReserves() external view returns (int256);
  function getCollateralReserves(address asset) external view returns (uint256);
  function isLiquidatable(address account) external view returns (bool);
  function isBorrowCollateralized(address account) external view returns (bool);
  function quoteCollateral(address asset, uint256 baseAmount) external view returns (uint256);
  function accrueAccount(address account) external;
  function supply(address asset, uint256 amount) external;
  function supplyTo(address dst, address asset, uint256 amount) external;
  function transfer(address dst, uint256 amount) external returns (bool);
  function withdraw(address asset, uint256 amount) external;
  function withdrawTo(address to, address asset, uint256 amount) external;
  function withdrawFrom(address src, address to, address asset, uint256 amount) external;
  function allow(address manager, bool isAllowed) external;
  function isAllowed(address owner, address manager) external view returns (bool);
  function hasPermission(address owner, address manager) external view returns (bool);
  function absorb(address absorber, address[] calldata accounts) external;
  function buyCollateral(address asset, uint256 minAmount, uint256 baseAmount, address recipient) external;
}

contract CometStandIn is IComet {
  struct AssetConfig {
    address asset;
    address priceFeed;
    uint8 decimals;
    uint64 borrowCollateralFactor;
    uint64 liquidateCollateralFactor;
    uint64 liquidationFactor;
    uint128 supplyCap;
  }

  /// @dev Comet's CometConfiguration.Configuration without the rewards and extension fields.
  struct Configuration {
    address governor;
    address pauseGuardian;
    address baseToken;
    address baseTokenPriceFeed;
    uint64 supplyKink;
    uint64 supplyPerYearInterestRateSlopeLow;
    uint64 supplyPerYearInterestRateSlopeHigh;
    uint64 supplyPerYearInterestRateBase;
    uint64 borrowKink;
    uint64 borrowPerYearInterestRateSlopeLow;
    uint64 borrowPerYearInterestRateSlopeHigh;
    uint64 borrowPerYearInterestRateBase;
    uint64 storeFrontPriceFactor;
    uint104 baseBorrowMin;
    uint104 targetReserves;
    AssetConfig[] assetConfigs;
  }

  struct UserBasic {
    int104 principal;
    uint64 baseTrackingIndex;
    uint64 baseTrackingAccrued;
    uint16 assetsIn;
    uint8 _reserved;
  }

  struct UserCollateral {
    uint128 balance;
    uint128 _reserved;
  }

  struct TotalsCollateral {
    uint128 totalSupplyAsset;
    uint128 _reserved;
  }

  error BadAsset();
  error Unauthorized();
  error BadDecimals();
  error BadDiscount();
  error BadPrice();
  error BorrowCFTooLarge();
  error BorrowTooSmall();
  error InsufficientReserves();
  error LiquidateCFTooLarge();
  error NoSelfTransfer();
  error NotCollateralized();
  error NotForSale();
  error NotLiquidatable();
  error SupplyCapExceeded();
  error TimestampTooLarge();
  error TooManyAssets();
  error TooMuchSlippage();
  error TransferInFailed();
  error TransferOutFailed();
  error InvalidUInt64();
  error InvalidUInt104();
  error InvalidUInt128();
  error InvalidInt104();
  error InvalidInt256();
  error NegativeNumber();

  uint8 internal constant MAX_ASSETS = 15;
  uint8 internal constant PRICE_FEED_DECIMALS = 8;
  uint64 internal constant SECONDS_PER_YEAR = 31_536_000;
  uint64 internal constant BASE_INDEX_SCALE = 1e15;
  uint64 internal constant FACTOR_SCALE = 1e18;

  address public immutable governor;
  address public immutable pauseGuardian;
  address public immutable baseToken;
  address public immutable baseTokenPriceFeed;
  uint256 public immutable supplyKink;
  uint256 public immutable supplyPerSecondInterestRateSlopeLow;
  uint256 public immutable supplyPerSecondInterestRateSlopeHigh;
  uint256 public immutable supplyPerSecondInterestRateBase;
  uint256 public immutable borrowKink;
  uint256 public immutable borrowPerSecondInterestRateSlopeLow;
  uint256 public immutable borrowPerSecondInterestRateSlopeHigh;
  uint256 public immutable borrowPerSecondInterestRateBase;
  uint256 public immutable storeFrontPriceFactor;
  uint256 public immutable baseScale;
  uint256 public immutable baseBorrowMin;
  uint256 public immutable targetReserves;
  uint8 public immutable decimals;
  uint8 public immutable numAssets;

  // CometStorage: the two packed slots of TotalsBasic, then the mappings.
  uint64 internal baseSupplyIndex;
  uint64 internal baseBorrowIndex;
  uint64 internal trackingSupplyIndex;
  uint64 internal trackingBorrowIndex;
  uint104 internal totalSupplyBase;
  uint104 internal totalBorrowBase;
  uint40 internal lastAccrualTime;
  uint8 internal pauseFlags;

  mapping(address => TotalsCollateral) public totalsCollateral;
  mapping(address => UserBasic) public userBasic;
  mapping(address => mapping(address => UserCollateral)) public userCollateral;
  AssetInfo[] internal assetList;
  mapping(address => mapping(address => bool)) public isAllowed; // CometStorage: owner -> manager

  constructor(Configuration memory config) {
    uint8 decimals_ = ICometToken(config.baseToken).decimals();
    if (decimals_ > 18) revert BadDecimals();
    if (config.storeFrontPriceFactor > FACTOR_SCALE) revert BadDiscount();
    if (config.assetConfigs.length > MAX_ASSETS) revert TooManyAssets();
    if (ICometPriceFeed(config.baseTokenPriceFeed).decimals() != PRICE_FEED_DECIMALS) revert BadDecimals();
    governor = config.governor;
    pauseGuardian = config.pauseGuardian;
    baseToken = config.baseToken;
    baseTokenPriceFeed = config.baseTokenPriceFeed;
    storeFrontPriceFactor = config.storeFrontPriceFactor;
    decimals = decimals_;
    baseScale = 10 ** decimals_;
    baseBorrowMin = config.baseBorrowMin;
    targetReserves = config.targetReserves;
    supplyKink = config.supplyKink;
    supplyPerSecondInterestRateSlopeLow = config.supplyPerYearInterestRateSlopeLow / SECONDS_PER_YEAR;
    supplyPerSecondInterestRateSlopeHigh = config.supplyPerYearInterestRateSlopeHigh / SECONDS_PER_YEAR;
    supplyPerSecondInterestRateBase = config.supplyPerYearInterestRateBase / SECONDS_PER_YEAR;
    borrowKink = config.borrowKink;
    borrowPerSecondInterestRateSlopeLow = config.borrowPerYearInterestRateSlopeLow / SECONDS_PER_YEAR;
    borrowPerSecondInterestRateSlopeHigh = config.borrowPerYearInterestRateSlopeHigh / SECONDS_PER_YEAR;
    borrowPerSecondInterestRateBase = config.borrowPerYearInterestRateBase / SECONDS_PER_YEAR;
    numAssets = uint8(config.assetConfigs.length);
    for (uint8 i = 0; i < config.assetConfigs.length; i++) {
      assetList.push(checkedAsset(config.assetConfigs[i], i));
    }
    // Comet.initializeStorage
    lastAccrualTime = getNowInternal();
    baseSupplyIndex = BASE_INDEX_SCALE;
    baseBorrowIndex = BASE_INDEX_SCALE;
  }

  function checkedAsset(AssetConfig memory c, uint8 i) internal view returns (AssetInfo memory) {
    if (ICometPriceFeed(c.priceFeed).decimals() != PRICE_FEED_DECIMALS) revert BadDecimals();
    if (ICometToken(c.asset).decimals() != c.decimals) revert BadDecimals();
    if (c.borrowCollateralFactor >= c.liquidateCollateralFactor) revert BorrowCFTooLarge();
    if (c.liquidateCollateralFactor > FACTOR_SCALE) revert LiquidateCFTooLarge();
    uint64 descale = FACTOR_SCALE / 1e4; // Comet keeps 4 decimals of each factor
    uint64 scale = uint64(10 ** c.decimals);
    return AssetInfo({
      offset: i,
      asset: c.asset,
      priceFeed: c.priceFeed,
      scale: scale,
      borrowCollateralFactor: c.borrowCollateralFactor / descale * descale,
      liquidateCollateralFactor: c.liquidateCollateralFactor / descale * descale,
      liquidationFactor: c.liquidationFactor / descale * descale,
      supplyCap: c.supplyCap / scale * scale // Comet keeps whole units of the cap
    });
  }

  // ---- CometMath ----

  function safe64(uint n) internal pure returns (uint64) {
    if (n > type(uint64).max) revert InvalidUInt64();
    return uint64(n);
  }

  function safe104(uint n) internal pure returns (uint104) {
    if (n > type(uint104).max) revert InvalidUInt104();
    return uint104(n);
  }

  function safe128(uint n) internal pure returns (uint128) {
    if (n > type(uint128).max) revert InvalidUInt128();
    return uint128(n);
  }

  function signed104(uint104 n) internal pure returns (int104) {
    if (n > uint104(type(int104).max)) revert InvalidInt104();
    return int104(n);
  }

  function signed256(uint256 n) internal pure returns (int256) {
    if (n > uint256(type(int256).max)) revert InvalidInt256();
    return int256(n);
  }

  function unsigned104(int104 n) internal pure returns (uint104) {
    if (n < 0) revert NegativeNumber();
    return uint104(n);
  }

  function unsigned256(int256 n) internal pure returns (uint256) {
    if (n < 0) revert NegativeNumber();
    return uint256(n);
  }

  // ---- CometCore: present and principal values ----

  function presentValue(int104 principalValue_) internal view returns (int256) {
    if (principalValue_ >= 0) {
      return signed256(presentValueSupply(baseSupplyIndex, uint104(principalValue_)));
    } else {
      return -signed256(presentValueBorrow(baseBorrowIndex, uint104(-principalValue_)));
    }
  }

  function presentValueSupply(uint64 baseSupplyIndex_, uint256 principalValue_) internal pure returns (uint256) {
    return principalValue_ * baseSupplyIndex_ / BASE_INDEX_SCALE;
  }

  function presentValueBorrow(uint64 baseBorrowIndex_, uint256 principalValue_) internal pure returns (uint256) {
    return principalValue_ * baseBorrowIndex_ / BASE_INDEX_SCALE;
  }

  function principalValue(int256 presentValue_) internal view returns (int104) {
    if (presentValue_ >= 0) {
      return signed104(principalValueSupply(baseSupplyIndex, uint256(presentValue_)));
    } else {
      return -signed104(principalValueBorrow(baseBorrowIndex, uint256(-presentValue_)));
    }
  }

  /// @dev rounded down
  function principalValueSupply(uint64 baseSupplyIndex_, uint256 presentValue_) internal pure returns (uint104) {
    return safe104((presentValue_ * BASE_INDEX_SCALE) / baseSupplyIndex_);
  }

  /// @dev rounded up
  function principalValueBorrow(uint64 baseBorrowIndex_, uint256 presentValue_) internal pure returns (uint104) {
    return safe104((presentValue_ * BASE_INDEX_SCALE + baseBorrowIndex_ - 1) / baseBorrowIndex_);
  }

  // ---- Comet: assets, prices, interest ----

  function getAssetInfo(uint8 i) public view returns (AssetInfo memory) {
    if (i >= numAssets) revert BadAsset();
    return assetList[i];
  }

  function getAssetInfoByAddress(address asset) public view returns (AssetInfo memory) {
    for (uint8 i = 0; i < numAssets; i++) {
      AssetInfo memory assetInfo = getAssetInfo(i);
      if (assetInfo.asset == asset) return assetInfo;
    }
    revert BadAsset();
  }

  function getNowInternal() internal view returns (uint40) {
    if (block.timestamp >= 2 ** 40) revert TimestampTooLarge();
    return uint40(block.timestamp);
  }

  function getPrice(address priceFeed) public view returns (uint256) {
    (, int price, , , ) = ICometPriceFeed(priceFeed).latestRoundData();
    if (price <= 0) revert BadPrice();
    return uint256(price);
  }

  function totalsBasic() external view returns (TotalsBasic memory) {
    return TotalsBasic(baseSupplyIndex, baseBorrowIndex, trackingSupplyIndex, trackingBorrowIndex,
                       totalSupplyBase, totalBorrowBase, lastAccrualTime, pauseFlags);
  }

  function accruedInterestIndices(uint timeElapsed) internal view returns (uint64, uint64) {
    uint64 baseSupplyIndex_ = baseSupplyIndex;
    uint64 baseBorrowIndex_ = baseBorrowIndex;
    if (timeElapsed > 0) {
      uint utilization = getUtilization();
      uint supplyRate = getSupplyRate(utilization);
      uint borrowRate = getBorrowRate(utilization);
      baseSupplyIndex_ += safe64(mulFactor(baseSupplyIndex_, supplyRate * timeElapsed));
      baseBorrowIndex_ += safe64(mulFactor(baseBorrowIndex_, borrowRate * timeElapsed));
    }
    return (baseSupplyIndex_, baseBorrowIndex_);
  }

  /// @dev Comet's accrueInternal without the rewards tracking.
  function accrueInternal() internal {
    uint40 now_ = getNowInternal();
    uint timeElapsed = uint256(now_ - lastAccrualTime);
    if (timeElapsed > 0) {
      (baseSupplyIndex, baseBorrowIndex) = accruedInterestIndices(timeElapsed);
      lastAccrualTime = now_;
    }
  }

  function accrueAccount(address account) external {
    accrueInternal();
    UserBasic memory basic = userBasic[account];
    updateBasePrincipal(account, basic, basic.principal);
  }

  function getSupplyRate(uint utilization) public view returns (uint64) {
    if (utilization <= supplyKink) {
      return safe64(supplyPerSecondInterestRateBase + mulFactor(supplyPerSecondInterestRateSlopeLow, utilization));
    } else {
      return safe64(supplyPerSecondInterestRateBase + mulFactor(supplyPerSecondInterestRateSlopeLow, supplyKink)
        + mulFactor(supplyPerSecondInterestRateSlopeHigh, (utilization - supplyKink)));
    }
  }

  function getBorrowRate(uint utilization) public view returns (uint64) {
    if (utilization <= borrowKink) {
      return safe64(borrowPerSecondInterestRateBase + mulFactor(borrowPerSecondInterestRateSlopeLow, utilization));
    } else {
      return safe64(borrowPerSecondInterestRateBase + mulFactor(borrowPerSecondInterestRateSlopeLow, borrowKink)
        + mulFactor(borrowPerSecondInterestRateSlopeHigh, (utilization - borrowKink)));
    }
  }

  function getUtilization() public view returns (uint) {
    uint totalSupply_ = presentValueSupply(baseSupplyIndex, totalSupplyBase);
    uint totalBorrow_ = presentValueBorrow(baseBorrowIndex, totalBorrowBase);
    if (totalSupply_ == 0) return 0;
    return totalBorrow_ * FACTOR_SCALE / totalSupply_;
  }

  function getReserves() public view returns (int) {
    (uint64 baseSupplyIndex_, uint64 baseBorrowIndex_) = accruedInterestIndices(getNowInternal() - lastAccrualTime);
    uint balance = ICometToken(baseToken).balanceOf(address(this));
    uint totalSupply_ = presentValueSupply(baseSupplyIndex_, totalSupplyBase);
    uint totalBorrow_ = presentValueBorrow(baseBorrowIndex_, totalBorrowBase);
    return signed256(balance) - signed256(totalSupply_) + signed256(totalBorrow_);
  }

  function getCollateralReserves(address asset) public view returns (uint) {
    return ICometToken(asset).balanceOf(address(this)) - totalsCollateral[asset].totalSupplyAsset;
  }

  // ---- Comet: account health (stored indexes, as Comet's own views) ----

  function isBorrowCollateralized(address account) public view returns (bool) {
    return !(liquidityBelowZero(account, false));
  }

  function isLiquidatable(address account) public view returns (bool) {
    return liquidityBelowZero(account, true);
  }

  /// @dev Comet's isBorrowCollateralized (borrowCF) / isLiquidatable (liquidateCF) loop.
  function liquidityBelowZero(address account, bool liquidate) internal view returns (bool) {
    int104 principal = userBasic[account].principal;
    if (principal >= 0) return false;
    uint16 assetsIn = userBasic[account].assetsIn;
    int liquidity = signedMulPrice(presentValue(principal), getPrice(baseTokenPriceFeed), uint64(baseScale));
    for (uint8 i = 0; i < numAssets; i++) {
      if (isInAsset(assetsIn, i)) {
        if (liquidity >= 0) return false;
        AssetInfo memory asset = getAssetInfo(i);
        uint newAmount = mulPrice(userCollateral[account][asset.asset].balance, getPrice(asset.priceFeed), asset.scale);
        uint factor = liquidate ? asset.liquidateCollateralFactor : asset.borrowCollateralFactor;
        liquidity += signed256(mulFactor(newAmount, factor));
      }
    }
    return liquidity < 0;
  }

  function mulFactor(uint n, uint factor) internal pure returns (uint) {
    return n * factor / FACTOR_SCALE;
  }

  function mulPrice(uint n, uint price, uint64 fromScale) internal pure returns (uint) {
    return n * price / fromScale;
  }

  /// @dev Solidity's signed division truncates toward zero: a debt's value rounds toward 0.
  function signedMulPrice(int n, uint price, uint64 fromScale) internal pure returns (int) {
    return n * signed256(price) / int256(uint256(fromScale));
  }

  function divPrice(uint n, uint price, uint64 toScale) internal pure returns (uint) {
    return n * toScale / price;
  }

  function isInAsset(uint16 assetsIn, uint8 assetOffset) internal pure returns (bool) {
    return (assetsIn & (uint16(1) << assetOffset) != 0);
  }

  function updateAssetsIn(address account, AssetInfo memory assetInfo, uint128 initialUserBalance, uint128 finalUserBalance) internal {
    if (initialUserBalance == 0 && finalUserBalance != 0) {
      userBasic[account].assetsIn |= (uint16(1) << assetInfo.offset);
    } else if (initialUserBalance != 0 && finalUserBalance == 0) {
      userBasic[account].assetsIn &= ~(uint16(1) << assetInfo.offset);
    }
  }

  /// @dev Comet's updateBasePrincipal without the rewards tracking.
  function updateBasePrincipal(address account, UserBasic memory basic, int104 principalNew) internal {
    basic.principal = principalNew;
    userBasic[account] = basic;
  }

  function repayAndSupplyAmount(int104 oldPrincipal, int104 newPrincipal) internal pure returns (uint104, uint104) {
    if (newPrincipal < oldPrincipal) return (0, 0);
    if (newPrincipal <= 0) {
      return (uint104(newPrincipal - oldPrincipal), 0);
    } else if (oldPrincipal >= 0) {
      return (0, uint104(newPrincipal - oldPrincipal));
    } else {
      return (uint104(-oldPrincipal), uint104(newPrincipal));
    }
  }

  function withdrawAndBorrowAmount(int104 oldPrincipal, int104 newPrincipal) internal pure returns (uint104, uint104) {
    if (newPrincipal > oldPrincipal) return (0, 0);
    if (newPrincipal >= 0) {
      return (uint104(oldPrincipal - newPrincipal), 0);
    } else if (oldPrincipal <= 0) {
      return (0, uint104(oldPrincipal - newPrincipal));
    } else {
      return (uint104(oldPrincipal), uint104(-newPrincipal));
    }
  }

  // ---- Comet: balances ----

  function balanceOf(address account) public view returns (uint256) {
    (uint64 baseSupplyIndex_, ) = accruedInterestIndices(getNowInternal() - lastAccrualTime);
    int104 principal = userBasic[account].principal;
    return principal > 0 ? presentValueSupply(baseSupplyIndex_, unsigned104(principal)) : 0;
  }

  function borrowBalanceOf(address account) public view returns (uint256) {
    (, uint64 baseBorrowIndex_) = accruedInterestIndices(getNowInternal() - lastAccrualTime);
    int104 principal = userBasic[account].principal;
    return principal < 0 ? presentValueBorrow(baseBorrowIndex_, unsigned104(-principal)) : 0;
  }

  function collateralBalanceOf(address account, address asset) external view returns (uint128) {
    return userCollateral[account][asset].balance;
  }

  function totalSupply() external view returns (uint256) {
    (uint64 baseSupplyIndex_, ) = accruedInterestIndices(getNowInternal() - lastAccrualTime);
    return presentValueSupply(baseSupplyIndex_, totalSupplyBase);
  }

  function totalBorrow() external view returns (uint256) {
    (, uint64 baseBorrowIndex_) = accruedInterestIndices(getNowInternal() - lastAccrualTime);
    return presentValueBorrow(baseBorrowIndex_, totalBorrowBase);
  }

  // ---- Comet: supply, transfer, withdraw ----

  function doTransferIn(address asset, address from, uint amount) internal returns (uint) {
    uint256 before = ICometToken(asset).balanceOf(address(this));
    if (!ICometToken(asset).transferFrom(from, address(this), amount)) revert TransferInFailed();
    return ICometToken(asset).balanceOf(address(this)) - before;
  }

  function doTransferOut(address asset, address to, uint amount) internal {
    if (!ICometToken(asset).transfer(to, amount)) revert TransferOutFailed();
  }

  function supply(address asset, uint amount) external {
    supplyInternal(msg.sender, msg.sender, asset, amount);
  }

  function supplyTo(address dst, address asset, uint amount) external {
    supplyInternal(msg.sender, dst, asset, amount);
  }

  function supplyInternal(address from, address dst, address asset, uint amount) internal {
    if (asset == baseToken) {
      if (amount == type(uint256).max) amount = borrowBalanceOf(dst);
      supplyBase(from, dst, amount);
    } else {
      supplyCollateral(from, dst, asset, safe128(amount));
    }
  }

  function supplyBase(address from, address dst, uint256 amount) internal {
    amount = doTransferIn(baseToken, from, amount);
    accrueInternal();
    UserBasic memory dstUser = userBasic[dst];
    int104 dstPrincipal = dstUser.principal;
    int256 dstBalance = presentValue(dstPrincipal) + signed256(amount);
    int104 dstPrincipalNew = principalValue(dstBalance);
    (uint104 repayAmount, uint104 supplyAmount) = repayAndSupplyAmount(dstPrincipal, dstPrincipalNew);
    totalSupplyBase += supplyAmount;
    totalBorrowBase -= repayAmount;
    updateBasePrincipal(dst, dstUser, dstPrincipalNew);
    emit Supply(from, dst, amount);
    if (supplyAmount > 0) emit Transfer(address(0), dst, presentValueSupply(baseSupplyIndex, supplyAmount));
  }

  function supplyCollateral(address from, address dst, address asset, uint128 amount) internal {
    amount = safe128(doTransferIn(asset, from, amount));
    AssetInfo memory assetInfo = getAssetInfoByAddress(asset);
    TotalsCollateral memory totals = totalsCollateral[asset];
    totals.totalSupplyAsset += amount;
    if (totals.totalSupplyAsset > assetInfo.supplyCap) revert SupplyCapExceeded();
    uint128 dstCollateral = userCollateral[dst][asset].balance;
    uint128 dstCollateralNew = dstCollateral + amount;
    totalsCollateral[asset] = totals;
    userCollateral[dst][asset].balance = dstCollateralNew;
    updateAssetsIn(dst, assetInfo, dstCollateral, dstCollateralNew);
    emit SupplyCollateral(from, dst, asset, amount);
  }

  /// @notice Base transfer only (Comet's transferBase), borrowing when needed.
  function transfer(address dst, uint amount) external returns (bool) {
    if (msg.sender == dst) revert NoSelfTransfer();
    if (amount == type(uint256).max) amount = balanceOf(msg.sender);
    transferBase(msg.sender, dst, amount);
    return true;
  }

  function transferBase(address src, address dst, uint256 amount) internal {
    accrueInternal();
    UserBasic memory srcUser = userBasic[src];
    UserBasic memory dstUser = userBasic[dst];
    int104 srcPrincipal = srcUser.principal;
    int104 dstPrincipal = dstUser.principal;
    int256 srcBalance = presentValue(srcPrincipal) - signed256(amount);
    int256 dstBalance = presentValue(dstPrincipal) + signed256(amount);
    int104 srcPrincipalNew = principalValue(srcBalance);
    int104 dstPrincipalNew = principalValue(dstBalance);
    (uint104 withdrawAmount, uint104 borrowAmount) = withdrawAndBorrowAmount(srcPrincipal, srcPrincipalNew);
    (uint104 repayAmount, uint104 supplyAmount) = repayAndSupplyAmount(dstPrincipal, dstPrincipalNew);
    // Note: Instead of `total += addAmount - subAmount` to avoid underflow errors.
    totalSupplyBase = totalSupplyBase + supplyAmount - withdrawAmount;
    totalBorrowBase = totalBorrowBase + borrowAmount - repayAmount;
    updateBasePrincipal(src, srcUser, srcPrincipalNew);
    updateBasePrincipal(dst, dstUser, dstPrincipalNew);
    if (srcBalance < 0) {
      if (uint256(-srcBalance) < baseBorrowMin) revert BorrowTooSmall();
      if (!isBorrowCollateralized(src)) revert NotCollateralized();
    }
    if (withdrawAmount > 0) emit Transfer(src, address(0), presentValueSupply(baseSupplyIndex, withdrawAmount));
    if (supplyAmount > 0) emit Transfer(address(0), dst, presentValueSupply(baseSupplyIndex, supplyAmount));
  }

  function withdraw(address asset, uint amount) external {
    withdrawInternal(msg.sender, msg.sender, asset, amount);
  }

  function withdrawTo(address to, address asset, uint amount) external {
    withdrawInternal(msg.sender, to, asset, amount);
  }

  // CometExt.allow / Comet.hasPermission / Comet.withdrawFrom
  function allow(address manager, bool isAllowed_) external {
    isAllowed[msg.sender][manager] = isAllowed_;
    emit Approval(msg.sender, manager, isAllowed_ ? type(uint256).max : 0);
  }

  function hasPermission(address owner, address manager) public view returns (bool) {
    return owner == manager || isAllowed[owner][manager];
  }

  function withdrawFrom(address src, address to, address asset, uint amount) external {
    if (!hasPermission(src, msg.sender)) revert Unauthorized();
    withdrawInternal(src, to, asset, amount);
  }

  function withdrawInternal(address src, address to, address asset, uint amount) internal {
    if (asset == baseToken) {
      if (amount == type(uint256).max) amount = balanceOf(src);
      withdrawBase(src, to, amount);
    } else {
      withdrawCollateral(src, to, asset, safe128(amount));
    }
  }

  function withdrawBase(address src, address to, uint256 amount) internal {
    accrueInternal();
    UserBasic memory srcUser = userBasic[src];
    int104 srcPrincipal = srcUser.principal;
    int256 srcBalance = presentValue(srcPrincipal) - signed256(amount);
    int104 srcPrincipalNew = principalValue(srcBalance);
    (uint104 withdrawAmount, uint104 borrowAmount) = withdrawAndBorrowAmount(srcPrincipal, srcPrincipalNew);
    totalSupplyBase -= withdrawAmount;
    totalBorrowBase += borrowAmount;
    updateBasePrincipal(src, srcUser, srcPrincipalNew);
    if (srcBalance < 0) {
      if (uint256(-srcBalance) < baseBorrowMin) revert BorrowTooSmall();
      if (!isBorrowCollateralized(src)) revert NotCollateralized();
    }
    doTransferOut(baseToken, to, amount);
    emit Withdraw(src, to, amount);
    if (withdrawAmount > 0) emit Transfer(src, address(0), presentValueSupply(baseSupplyIndex, withdrawAmount));
  }

  function withdrawCollateral(address src, address to, address asset, uint128 amount) internal {
    uint128 srcCollateral = userCollateral[src][asset].balance;
    uint128 srcCollateralNew = srcCollateral - amount;
    totalsCollateral[asset].totalSupplyAsset -= amount;
    userCollateral[src][asset].balance = srcCollateralNew;
    AssetInfo memory assetInfo = getAssetInfoByAddress(asset);
    updateAssetsIn(src, assetInfo, srcCollateral, srcCollateralNew);
    // Note: no accrue interest, BorrowCF < LiquidationCF covers small changes
    if (!isBorrowCollateralized(src)) revert NotCollateralized();
    doTransferOut(asset, to, amount);
    emit WithdrawCollateral(src, to, asset, amount);
  }

  // ---- Comet: liquidation ----

  function absorb(address absorber, address[] calldata accounts) external {
    accrueInternal();
    for (uint i = 0; i < accounts.length; i++) {
      absorbInternal(absorber, accounts[i]);
    }
  }

  function absorbInternal(address absorber, address account) internal {
    if (!isLiquidatable(account)) revert NotLiquidatable();
    UserBasic memory accountUser = userBasic[account];
    int104 oldPrincipal = accountUser.principal;
    int256 oldBalance = presentValue(oldPrincipal);
    uint16 assetsIn = accountUser.assetsIn;
    uint256 basePrice = getPrice(baseTokenPriceFeed);
    uint256 deltaValue = 0;
    for (uint8 i = 0; i < numAssets; i++) {
      if (isInAsset(assetsIn, i)) {
        AssetInfo memory assetInfo = getAssetInfo(i);
        address asset = assetInfo.asset;
        uint128 seizeAmount = userCollateral[account][asset].balance;
        userCollateral[account][asset].balance = 0;
        totalsCollateral[asset].totalSupplyAsset -= seizeAmount;
        uint256 value = mulPrice(seizeAmount, getPrice(assetInfo.priceFeed), assetInfo.scale);
        deltaValue += mulFactor(value, assetInfo.liquidationFactor);
        emit AbsorbCollateral(absorber, account, asset, seizeAmount, value);
      }
    }
    uint256 deltaBalance = divPrice(deltaValue, basePrice, uint64(baseScale));
    int256 newBalance = oldBalance + signed256(deltaBalance);
    // New balance will not be negative, all excess debt absorbed by reserves
    if (newBalance < 0) newBalance = 0;
    int104 newPrincipal = principalValue(newBalance);
    updateBasePrincipal(account, accountUser, newPrincipal);
    userBasic[account].assetsIn = 0;
    (uint104 repayAmount, uint104 supplyAmount) = repayAndSupplyAmount(oldPrincipal, newPrincipal);
    // Reserves are decreased by increasing total supply and decreasing borrows
    totalSupplyBase += supplyAmount;
    totalBorrowBase -= repayAmount;
    uint256 basePaidOut = unsigned256(newBalance - oldBalance);
    uint256 valueOfBasePaidOut = mulPrice(basePaidOut, basePrice, uint64(baseScale));
    emit AbsorbDebt(absorber, account, basePaidOut, valueOfBasePaidOut);
    if (newPrincipal > 0) {
      emit Transfer(address(0), account, presentValueSupply(baseSupplyIndex, unsigned104(newPrincipal)));
    }
  }

  function buyCollateral(address asset, uint minAmount, uint baseAmount, address recipient) external {
    int reserves = getReserves();
    if (reserves >= 0 && uint(reserves) >= targetReserves) revert NotForSale();
    baseAmount = doTransferIn(baseToken, msg.sender, baseAmount);
    uint collateralAmount = quoteCollateral(asset, baseAmount);
    if (collateralAmount < minAmount) revert TooMuchSlippage();
    if (collateralAmount > getCollateralReserves(asset)) revert InsufficientReserves();
    doTransferOut(asset, recipient, safe128(collateralAmount));
    emit BuyCollateral(msg.sender, asset, baseAmount, collateralAmount);
  }

  /// @notice Collateral for `baseAmount` of base, at the store front price: the asset's price
  ///         discounted by storeFrontPriceFactor * (1 - liquidationFactor).
  function quoteCollateral(address asset, uint baseAmount) public view returns (uint) {
    AssetInfo memory assetInfo = getAssetInfoByAddress(asset);
    uint256 assetPrice = getPrice(assetInfo.priceFeed);
    uint256 discountFactor = mulFactor(storeFrontPriceFactor, FACTOR_SCALE - assetInfo.liquidationFactor);
    uint256 assetPriceDiscounted = mulFactor(assetPrice, FACTOR_SCALE - discountFactor);
    uint256 basePrice = getPrice(baseTokenPriceFeed);
    return basePrice * baseAmount * assetInfo.scale / assetPriceDiscounted / baseScale;
  }
}
