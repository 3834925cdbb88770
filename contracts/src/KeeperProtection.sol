// SPDX-License-Identifier: MIT
pragma solidity 0.8.19;

import {TokenCalls} from "./TokenCalls.sol";
import {CometDeleverage, CometProtection, IPComet} from "./CometProtection.sol";

/// @title KeeperProtection: deleverage a borrower from its own position (keeper's own, not a stand-in).
/// @notice For one borrower of an Aave V3 Pool: flash-borrow the debt token (Aave
/// `flashLoanSimple` or Morpho Blue `flashLoan`), repay `repayAmount` of the borrower's variable
/// debt on its behalf, pull `withdrawAmount` of its aTokens through the allowance the borrower
/// gave this contract (`aToken.approve(this, ...)`: the delegation), withdraw the collateral,
/// sell it on one Uniswap V3 pool (SwapRouter `exactInputSingle` with a deadline), repay the
/// flash loan. In the same transaction it checks that
///   * the swap paid at least the Aave oracle's value of the collateral sold less
///     `maxSlippageBps` (else `SlippageTooHigh`), and
///   * the borrower's health factor (Pool.getUserAccountData) is at least `minHealthFactor`
///     (else `HealthFactorTooLow`);
/// and reverts otherwise. Only the borrower itself or the keeper key it designated with
/// `setKeeper` may call it for that borrower. It keeps nothing: what is left of the debt
/// token (and any collateral) goes to the borrower before the call returns.
/// Morpho Blue (`deleverageMorpho`): the same with Morpho's free flash loan, `Morpho.repay` on
/// behalf, `withdrawCollateral` through the borrower's `setAuthorization(this, true)`, the
/// market's oracle for the slippage bound and Morpho's own health numbers
/// (maxBorrow * 1e18 / borrowed) for the check.
/// Compound V3 (`deleverageComet`, CometProtection.sol): the base token flash-borrowed from Aave
/// or Morpho Blue, `supplyTo` the borrower, `withdrawFrom` through its `allow(this, true)`, Comet's
/// getPrice for the slippage bound and `cometHealthFactor` for the check.
/// What the delegation lets this contract do: move the borrower's aTokens, only inside a
/// deleverage called by the borrower or its keeper, only to sell them for the borrower's debt
/// token within the slippage bound and only if the borrower ends above the target HF.
interface IPErc20 {
    function balanceOf(address) external view returns (uint256);
    function decimals() external view returns (uint8);
}

interface IPAavePool {
    function flashLoanSimple(address receiver, address asset, uint256 amount, bytes calldata params, uint16 referral) external;
    function repay(address asset, uint256 amount, uint256 rateMode, address onBehalfOf) external returns (uint256);
    function withdraw(address asset, uint256 amount, address to) external returns (uint256);
    function getUserAccountData(address user) external view
        returns (uint256, uint256, uint256, uint256, uint256, uint256);
    function ADDRESSES_PROVIDER() external view returns (address);
    function flashLoan(address receiver, address[] calldata assets, uint256[] calldata amounts,
        uint256[] calldata modes, address onBehalfOf, bytes calldata params, uint16 referral) external; // boost
    function supply(address asset, uint256 amount, address onBehalfOf, uint16 referral) external; // boost
}

interface IPAddressesProvider {
    function getPriceOracle() external view returns (address);
}

interface IPPriceOracle {
    function getAssetPrice(address asset) external view returns (uint256);
}

interface IPMorpho {
    function flashLoan(address token, uint256 assets, bytes calldata data) external;
}

struct MorphoParams {
    address loanToken;
    address collateralToken;
    address oracle;
    address irm;
    uint256 lltv;
}

interface IPMorphoBlue {
    function repay(MorphoParams memory mp, uint256 assets, uint256 shares, address onBehalf, bytes memory data)
        external returns (uint256, uint256);
    function withdrawCollateral(MorphoParams memory mp, uint256 assets, address onBehalf, address receiver) external;
    function position(bytes32 id, address user) external view returns (uint256, uint128, uint128);
    function market(bytes32 id) external view returns (uint128, uint128, uint128, uint128, uint128, uint128);
}

interface IPMorphoOracle {
    function price() external view returns (uint256);
}

interface IPSwapRouter {
    struct ExactInputSingleParams {
        address tokenIn;
        address tokenOut;
        uint24 fee;
        address recipient;
        uint256 deadline;
        uint256 amountIn;
        uint256 amountOutMinimum;
        uint160 sqrtPriceLimitX96;
    }
    function exactInputSingle(ExactInputSingleParams calldata params) external payable returns (uint256);
}

contract KeeperProtection is CometProtection {
    uint8 public constant FLASH_AAVE = 1;
    uint8 public constant FLASH_MORPHO = 2;
    uint256 public constant BPS = 10_000;
    uint256 private constant RESERVE_DATA_A_TOKEN_WORD = 8; // getReserveData's 15-word layout (3.0.2 and 3.6)

    uint8 private constant KIND_AAVE = 1;
    uint8 private constant KIND_MORPHO = 2;
    uint8 private constant KIND_COMET = 3;
    uint256 private constant WAD = 1e18;
    uint256 private constant ORACLE_PRICE_SCALE = 1e36; // Morpho Blue
    uint256 private constant VIRTUAL_SHARES = 1e6; // Morpho Blue SharesMathLib
    uint256 private constant VIRTUAL_ASSETS = 1;

    /// Morpho Blue: repay `repayAssets` of the loan token (by shares, `repayShares`, when
    /// non-zero: all of it), withdraw `withdrawCollateral` through the borrower's
    /// `setAuthorization(this, true)`, sell it; the flash loan is Morpho's own (free).
    struct MorphoDeleverage {
        address morpho;
        MorphoParams market;
        address borrower;
        uint256 repayAssets; // flash-borrowed
        uint256 repayShares; // 0: repay by assets
        uint256 withdrawCollateral;
        uint24 poolFee;
        uint256 deadline;
        uint256 minHealthFactor; // wad: maxBorrow * 1e18 / borrowed, as Morpho._isHealthy
        uint256 maxSlippageBps; // vs the market's oracle
    }

    struct AaveDeleverage {
        address pool;
        address borrower;
        address collateral;
        address debt;
        uint256 repayAmount; // flash-borrowed and repaid on the borrower's behalf
        uint256 withdrawAmount; // collateral taken through the aToken allowance and sold
        uint24 poolFee; // the Uniswap V3 pool (collateral, debt, poolFee)
        uint256 deadline;
        uint256 minHealthFactor; // wad
        uint256 maxSlippageBps; // vs the Aave oracle
        uint8 flashSource;
        address lender; // the Aave Pool or Morpho Blue
    }

    address public immutable router;
    mapping(address => address) public keeperOf; // borrower -> the key that may deleverage it
    address private _caller; // the only lender whose callback is accepted right now

    event KeeperSet(address indexed borrower, address indexed keeper);
    event Deleveraged(address indexed borrower, address indexed collateral, address indexed debt, uint256 sold,
        uint256 repaid, uint256 received, uint256 healthFactorAfter);

    error NotAllowed(address caller, address borrower);
    error UnexpectedCallback(address from);
    error BadFlashSource(uint8 source);
    error SlippageTooHigh(uint256 received, uint256 minimum);
    error HealthFactorTooLow(uint256 healthFactor, uint256 minimum);
    error NoReserve(address asset);

    constructor(address router_) {
        router = router_;
    }

    /// The borrower names the key that may deleverage it (address(0): only itself).
    function setKeeper(address keeper) external {
        keeperOf[msg.sender] = keeper;
        emit KeeperSet(msg.sender, keeper);
    }

    function deleverageAave(AaveDeleverage calldata d) external {
        _onlyFor(d.borrower);
        bytes memory data = abi.encode(KIND_AAVE, abi.encode(d));
        _caller = d.lender;
        if (d.flashSource == FLASH_AAVE) {
            IPAavePool(d.lender).flashLoanSimple(address(this), d.debt, d.repayAmount, data, 0);
        } else if (d.flashSource == FLASH_MORPHO) {
            IPMorpho(d.lender).flashLoan(d.debt, d.repayAmount, data);
        } else {
            revert BadFlashSource(d.flashSource);
        }
        _caller = address(0);
        (,,,,, uint256 hf) = IPAavePool(d.pool).getUserAccountData(d.borrower);
        if (hf < d.minHealthFactor) revert HealthFactorTooLow(hf, d.minHealthFactor);
        _transfer(d.debt, d.borrower, _balance(d.debt)); // keeps nothing
        _transfer(d.collateral, d.borrower, _balance(d.collateral));
    }

    /// Aave V3 flashLoanSimple.
    function executeOperation(address asset, uint256 amount, uint256 premium, address initiator, bytes calldata params)
        external returns (bool)
    {
        if (msg.sender != _caller || initiator != address(this)) revert UnexpectedCallback(msg.sender);
        _act(params);
        _approve(asset, msg.sender, amount + premium);
        return true;
    }

    /// Morpho Blue flashLoan (free): Morpho pulls `assets` back after the callback.
    function onMorphoFlashLoan(uint256 assets, bytes calldata data) external {
        if (msg.sender != _caller) revert UnexpectedCallback(msg.sender);
        address token = _act(data);
        _approve(token, msg.sender, assets);
    }

    function deleverageMorpho(MorphoDeleverage calldata d) external {
        _onlyFor(d.borrower);
        _caller = d.morpho;
        IPMorpho(d.morpho).flashLoan(d.market.loanToken, d.repayAssets, abi.encode(KIND_MORPHO, abi.encode(d)));
        _caller = address(0);
        uint256 hf = _morphoHealth(d.morpho, d.market, d.borrower);
        if (hf < d.minHealthFactor) revert HealthFactorTooLow(hf, d.minHealthFactor);
        _transfer(d.market.loanToken, d.borrower, _balance(d.market.loanToken));
        _transfer(d.market.collateralToken, d.borrower, _balance(d.market.collateralToken));
    }

    /// Compound V3: flash the base token from Aave or Morpho Blue (CometProtection.sol).
    function deleverageComet(CometDeleverage calldata d) external {
        _onlyFor(d.borrower);
        _caller = d.lender;
        address base = _flash(d.flashSource, d.lender, d.comet, d.repayAmount, abi.encode(KIND_COMET, abi.encode(d)));
        _caller = address(0);
        uint256 hf = cometHealthFactor(d.comet, d.borrower);
        if (hf < d.minHealthFactor) revert HealthFactorTooLow(hf, d.minHealthFactor);
        _transfer(base, d.borrower, _balance(base));
        _transfer(d.collateral, d.borrower, _balance(d.collateral));
    }

    function _flash(uint8 source, address lender, address comet, uint256 amount, bytes memory data)
        private returns (address base)
    {
        base = IPComet(comet).baseToken();
        if (source == FLASH_AAVE) {
            IPAavePool(lender).flashLoanSimple(address(this), base, amount, data, 0);
        } else if (source == FLASH_MORPHO) {
            IPMorpho(lender).flashLoan(base, amount, data);
        } else {
            revert BadFlashSource(source);
        }
    }

    function _sell(address tokenIn, address tokenOut, uint24 fee, uint256 deadline, uint256 amount)
        private returns (uint256)
    {
        _approve(tokenIn, router, amount);
        return IPSwapRouter(router).exactInputSingle(
            IPSwapRouter.ExactInputSingleParams(tokenIn, tokenOut, fee, address(this), deadline, amount, 0, 0));
    }

    /// The deleverage inside the flash loan; returns the token borrowed.
    function _act(bytes memory data) internal returns (address) {
        (uint8 kind, bytes memory inner) = abi.decode(data, (uint8, bytes));
        if (kind == KIND_COMET) {
            CometDeleverage memory c = abi.decode(inner, (CometDeleverage));
            (address base, uint256 repaid) = _cometRepayAndWithdraw(c);
            uint256 received = _sell(c.collateral, base, c.poolFee, c.deadline, c.withdrawAmount);
            uint256 minimum = _cometOracleMinimum(c);
            if (received < minimum) revert SlippageTooHigh(received, minimum);
            emit Deleveraged(c.borrower, c.collateral, base, c.withdrawAmount, repaid, received,
                cometHealthFactor(c.comet, c.borrower));
            return base;
        }
        if (kind == KIND_AAVE) {
            AaveDeleverage memory a = abi.decode(inner, (AaveDeleverage));
            _deleverage(a);
            return a.debt;
        }
        MorphoDeleverage memory m = abi.decode(inner, (MorphoDeleverage));
        _deleverageMorpho(m);
        return m.market.loanToken;
    }

    function _deleverageMorpho(MorphoDeleverage memory d) internal {
        MorphoParams memory mp = d.market;
        _approve(mp.loanToken, d.morpho, d.repayAssets);
        (uint256 repaid,) = IPMorphoBlue(d.morpho).repay(mp, d.repayShares == 0 ? d.repayAssets : 0, d.repayShares,
            d.borrower, "");
        IPMorphoBlue(d.morpho).withdrawCollateral(mp, d.withdrawCollateral, d.borrower, address(this));
        _approve(mp.collateralToken, router, d.withdrawCollateral);
        uint256 received = IPSwapRouter(router).exactInputSingle(
            IPSwapRouter.ExactInputSingleParams(mp.collateralToken, mp.loanToken, d.poolFee, address(this), d.deadline,
                d.withdrawCollateral, 0, 0)
        );
        uint256 value = d.withdrawCollateral * IPMorphoOracle(mp.oracle).price() / ORACLE_PRICE_SCALE;
        uint256 minimum = value * (BPS - d.maxSlippageBps) / BPS;
        if (received < minimum) revert SlippageTooHigh(received, minimum);
        emit Deleveraged(d.borrower, mp.collateralToken, mp.loanToken, d.withdrawCollateral, repaid, received,
            _morphoHealth(d.morpho, mp, d.borrower));
    }

    /// Morpho._isHealthy's numbers as a health factor: maxBorrow * 1e18 / borrowed (max: no debt).
    function _morphoHealth(address morpho, MorphoParams memory mp, address borrower) internal view returns (uint256) {
        bytes32 id = keccak256(abi.encode(mp));
        (, uint128 borrowShares, uint128 collateral) = IPMorphoBlue(morpho).position(id, borrower);
        if (borrowShares == 0) return type(uint256).max;
        (,, uint128 tba, uint128 tbs,,) = IPMorphoBlue(morpho).market(id);
        uint256 borrowed = (uint256(borrowShares) * (tba + VIRTUAL_ASSETS) + (tbs + VIRTUAL_SHARES) - 1)
            / (tbs + VIRTUAL_SHARES); // toAssetsUp
        uint256 maxBorrow = uint256(collateral) * IPMorphoOracle(mp.oracle).price() / ORACLE_PRICE_SCALE * mp.lltv / WAD;
        return maxBorrow * WAD / borrowed;
    }

    function _onlyFor(address borrower) internal view {
        if (msg.sender != borrower && (msg.sender != keeperOf[borrower] || msg.sender == address(0))) {
            revert NotAllowed(msg.sender, borrower);
        }
    }

    function _deleverage(AaveDeleverage memory d) internal {
        _approve(d.debt, d.pool, d.repayAmount);
        uint256 repaid = IPAavePool(d.pool).repay(d.debt, d.repayAmount, 2, d.borrower);
        _tokenCall(_aToken(d.pool, d.collateral),
            abi.encodeWithSelector(0x23b872dd, d.borrower, address(this), d.withdrawAmount)); // transferFrom
        uint256 sold = IPAavePool(d.pool).withdraw(d.collateral, d.withdrawAmount, address(this));
        _approve(d.collateral, router, sold);
        uint256 received = IPSwapRouter(router).exactInputSingle(
            IPSwapRouter.ExactInputSingleParams(d.collateral, d.debt, d.poolFee, address(this), d.deadline, sold, 0, 0)
        );
        uint256 minimum = _oracleMinimum(d, sold);
        if (received < minimum) revert SlippageTooHigh(received, minimum);
        (,,,,, uint256 hf) = IPAavePool(d.pool).getUserAccountData(d.borrower);
        emit Deleveraged(d.borrower, d.collateral, d.debt, sold, repaid, received, hf);
    }

    /// The oracle's value of `sold` collateral in debt-token units, less maxSlippageBps.
    function _oracleMinimum(AaveDeleverage memory d, uint256 sold) internal view returns (uint256) {
        IPPriceOracle oracle = IPPriceOracle(IPAddressesProvider(IPAavePool(d.pool).ADDRESSES_PROVIDER()).getPriceOracle());
        uint256 pc = oracle.getAssetPrice(d.collateral);
        uint256 pd = oracle.getAssetPrice(d.debt);
        uint256 value = sold * pc * 10 ** IPErc20(d.debt).decimals() / (pd * 10 ** IPErc20(d.collateral).decimals());
        return value * (BPS - d.maxSlippageBps) / BPS;
    }

    // ---------------------------------------------------------------- boost (re-leverage), Aave V3

    /// Aave V3 boost: flash-borrow `borrowAmount` of the debt token with `flashLoan` mode 2 (the
    /// debt is opened for the borrower through its credit delegation,
    /// `VariableDebtToken.approveDelegation(this, ...)`: no premium), buy collateral with it on
    /// one Uniswap V3 pool within `maxSlippageBps` of the Aave oracle, supply it for the borrower.
    /// The health factor after must be within [minHealthFactor, maxHealthFactor].
    struct AaveBoost {
        address pool;
        address borrower;
        address collateral;
        address debt;
        uint256 borrowAmount;
        uint24 poolFee; // the Uniswap V3 pool (debt, collateral, poolFee)
        uint256 deadline;
        uint256 minHealthFactor; // wad
        uint256 maxHealthFactor; // wad
        uint256 maxSlippageBps; // vs the Aave oracle
    }

    event Boosted(address indexed borrower, address indexed collateral, address indexed debt, uint256 borrowed,
        uint256 supplied, uint256 healthFactorAfter);

    error HealthFactorTooHigh(uint256 healthFactor, uint256 maximum);

    uint256 private _supplied; // the boost's collateral bought and supplied, inside its flash loan

    function boostAave(AaveBoost calldata b) external {
        _onlyFor(b.borrower);
        address[] memory assets = new address[](1);
        uint256[] memory amounts = new uint256[](1);
        uint256[] memory modes = new uint256[](1);
        (assets[0], amounts[0], modes[0]) = (b.debt, b.borrowAmount, 2);
        _caller = b.pool;
        IPAavePool(b.pool).flashLoan(address(this), assets, amounts, modes, b.borrower, abi.encode(b), 0);
        _caller = address(0);
        (,,,,, uint256 hf) = IPAavePool(b.pool).getUserAccountData(b.borrower);
        if (hf < b.minHealthFactor) revert HealthFactorTooLow(hf, b.minHealthFactor);
        if (hf > b.maxHealthFactor) revert HealthFactorTooHigh(hf, b.maxHealthFactor);
        emit Boosted(b.borrower, b.collateral, b.debt, b.borrowAmount, _supplied, hf);
        _supplied = 0;
        _transfer(b.debt, b.borrower, _balance(b.debt)); // keeps nothing
        _transfer(b.collateral, b.borrower, _balance(b.collateral));
    }

    /// Aave V3 flashLoan (the boost's): buy collateral with the borrowed debt token, supply it for
    /// the borrower; the Pool then opens the debt in the borrower's name (mode 2).
    function executeOperation(address[] calldata, uint256[] calldata amounts, uint256[] calldata,
        address initiator, bytes calldata params) external returns (bool)
    {
        if (msg.sender != _caller || initiator != address(this)) revert UnexpectedCallback(msg.sender);
        AaveBoost memory b = abi.decode(params, (AaveBoost));
        _approve(b.debt, router, amounts[0]);
        uint256 bought = IPSwapRouter(router).exactInputSingle(
            IPSwapRouter.ExactInputSingleParams(b.debt, b.collateral, b.poolFee, address(this), b.deadline,
                amounts[0], 0, 0)
        );
        IPPriceOracle oracle = IPPriceOracle(IPAddressesProvider(IPAavePool(b.pool).ADDRESSES_PROVIDER()).getPriceOracle());
        uint256 value = amounts[0] * oracle.getAssetPrice(b.debt) * 10 ** IPErc20(b.collateral).decimals()
            / (oracle.getAssetPrice(b.collateral) * 10 ** IPErc20(b.debt).decimals());
        uint256 minimum = value * (BPS - b.maxSlippageBps) / BPS;
        if (bought < minimum) revert SlippageTooHigh(bought, minimum);
        _approve(b.collateral, b.pool, bought);
        IPAavePool(b.pool).supply(b.collateral, bought, b.borrower, 0);
        _supplied = bought;
        return true;
    }

    function _aToken(address pool, address asset) internal view returns (address a) {
        (bool ok, bytes memory ret) = pool.staticcall(abi.encodeWithSelector(0x35ea6a75, asset)); // getReserveData
        if (!ok || ret.length < 32 * (RESERVE_DATA_A_TOKEN_WORD + 1)) revert NoReserve(asset);
        assembly {
            a := mload(add(ret, mul(32, 9)))
        }
    }

    function _balance(address token) internal view returns (uint256) {
        return TokenCalls.balanceOf(token, address(this));
    }

    function _tokenCall(address token, bytes memory data) private {
        TokenCalls.call(token, data);
    }

    function _transfer(address token, address to, uint256 amount) internal {
        TokenCalls.transfer(token, to, amount);
    }

    function _approve(address token, address spender, uint256 amount) internal {
        TokenCalls.approve(token, spender, amount);
    }
}
