// SPDX-License-Identifier: MIT
pragma solidity 0.8.19;

import {TokenCalls} from "./TokenCalls.sol";

/// @title CometProtection: the Compound V3 (Comet) part of KeeperProtection (keeper's own).
/// @notice Inside KeeperProtection's flash loan of the base token (Aave `flashLoanSimple` or
/// Morpho Blue `flashLoan`): `supplyTo(borrower, base, repayAmount)` repays the borrower's base
/// debt, `withdrawFrom(borrower, this, collateral, withdrawAmount)` takes collateral through the
/// borrower's `allow(contract, true)` (the delegation); KeeperProtection sells it for base on one
/// Uniswap V3 pool and checks the sale against `_cometOracleMinimum` (Comet's own
/// `getPrice` of both assets, less `maxSlippageBps`) and, after the flash loan, the borrower's
/// `cometHealthFactor` against `minHealthFactor`.
/// Comet has no health-factor getter: `cometHealthFactor` is keeper's (keeper.protocols.
/// compound_v3.math.hf_wad), computed from what Comet shows, with Comet's own rounding
/// (CometCore mulPrice / mulFactor, Comet.isLiquidatable's sums):
///   sum over assetsIn of mulFactor(mulPrice(userCollateral, getPrice(feed), scale), liquidateCF)
///   * 1e18 / mulPrice(borrowBalanceOf, getPrice(baseTokenPriceFeed), baseScale).
/// Below 1e18 Comet's isLiquidatable is true; the deleverage demands far more.
interface IPComet {
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

    function baseToken() external view returns (address);
    function baseTokenPriceFeed() external view returns (address);
    function baseScale() external view returns (uint256);
    function numAssets() external view returns (uint8);
    function getAssetInfo(uint8 i) external view returns (AssetInfo memory);
    function getAssetInfoByAddress(address asset) external view returns (AssetInfo memory);
    function getPrice(address priceFeed) external view returns (uint256);
    function userBasic(address account) external view returns (int104, uint64, uint64, uint16, uint8);
    function userCollateral(address account, address asset) external view returns (uint128, uint128);
    function borrowBalanceOf(address account) external view returns (uint256);
    function supplyTo(address dst, address asset, uint256 amount) external;
    function withdrawFrom(address src, address to, address asset, uint256 amount) external;
}

/// One Comet deleverage: the flash loan is `repayAmount` of Comet's base token.
struct CometDeleverage {
    address comet;
    address borrower;
    address collateral;
    uint256 repayAmount; // base units, flash-borrowed and supplied to the borrower
    uint256 withdrawAmount; // collateral units taken through `allow` and sold
    uint24 poolFee; // the Uniswap V3 pool (collateral, base, poolFee)
    uint256 deadline;
    uint256 minHealthFactor; // wad, cometHealthFactor
    uint256 maxSlippageBps; // vs Comet's getPrice
    uint8 flashSource; // KeeperProtection.FLASH_AAVE | FLASH_MORPHO
    address lender;
}

abstract contract CometProtection {
    uint256 private constant COMET_FACTOR_SCALE = 1e18;
    uint256 private constant COMET_BPS = 10_000;

    /// The deleverage names the base token as the collateral (withdrawFrom would borrow).
    error NotCollateral(address asset);

    /// The borrower's liquidation-weighted collateral value * 1e18 / its borrow value, at
    /// Comet's current prices and accrued indexes (type(uint256).max without debt).
    function cometHealthFactor(address comet, address borrower) public view returns (uint256) {
        IPComet c = IPComet(comet);
        uint256 debtValue = c.borrowBalanceOf(borrower) * c.getPrice(c.baseTokenPriceFeed()) / c.baseScale();
        if (debtValue == 0) return type(uint256).max;
        (,,, uint16 assetsIn,) = c.userBasic(borrower);
        uint8 n = c.numAssets();
        uint256 liq;
        for (uint8 i = 0; i < n; i++) {
            if (assetsIn & (uint16(1) << i) == 0) continue;
            IPComet.AssetInfo memory info = c.getAssetInfo(i);
            (uint128 balance,) = c.userCollateral(borrower, info.asset);
            uint256 value = uint256(balance) * c.getPrice(info.priceFeed) / info.scale; // mulPrice
            liq += value * info.liquidateCollateralFactor / COMET_FACTOR_SCALE; // mulFactor
        }
        return liq * 1e18 / debtValue;
    }

    /// Inside the flash loan, before the sale: repay, then withdraw through the delegation.
    /// Returns the base token and what was repaid (the borrow balance's fall).
    function _cometRepayAndWithdraw(CometDeleverage memory d) internal returns (address base, uint256 repaid) {
        IPComet c = IPComet(d.comet);
        base = c.baseToken();
        if (d.collateral == base) revert NotCollateral(base);
        uint256 owed = c.borrowBalanceOf(d.borrower);
        TokenCalls.approve(base, d.comet, d.repayAmount);
        c.supplyTo(d.borrower, base, d.repayAmount);
        repaid = owed - c.borrowBalanceOf(d.borrower);
        c.withdrawFrom(d.borrower, address(this), d.collateral, d.withdrawAmount);
    }

    /// The least the sale may pay: Comet's getPrice value of the collateral sold, in base
    /// units, less maxSlippageBps.
    function _cometOracleMinimum(CometDeleverage memory d) internal view returns (uint256) {
        IPComet c = IPComet(d.comet);
        IPComet.AssetInfo memory info = c.getAssetInfoByAddress(d.collateral);
        uint256 value = d.withdrawAmount * c.getPrice(info.priceFeed) * c.baseScale()
            / (uint256(info.scale) * c.getPrice(c.baseTokenPriceFeed()));
        return value * (COMET_BPS - d.maxSlippageBps) / COMET_BPS;
    }
}
