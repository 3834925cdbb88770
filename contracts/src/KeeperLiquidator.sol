// SPDX-License-Identifier: MIT
pragma solidity 0.8.19;

import {TokenCalls} from "./TokenCalls.sol";

/// @title KeeperLiquidator: keeper's own capital-free liquidator (not a stand-in).
/// @notice One entry per protocol. The debt token is borrowed for the length of the
/// transaction (Aave V3 `flashLoanSimple`, Morpho Blue `flashLoan`, a Uniswap V3 pool's
/// `flash`; Morpho Blue's own `liquidate` callback needs none), the position is liquidated,
/// the seized collateral is sold along the caller's route (SwapRouter `exactInputSingle` for
/// one hop, `exactInput` for two), the loan is repaid, and the balance of `profitToken` must
/// have grown by at least `minProfit`, else everything reverts. Then every token the call
/// touched is swept to the owner: the contract holds nothing between transactions.
/// Only the owner calls the entries; a callback is accepted only from the lender or
/// protocol the current entry called (`_caller`), and Aave's only with this contract as
/// initiator. Amounts the caller gives are used as given: keeper plans them off-chain.
interface IAavePoolLike {
    function flashLoanSimple(address receiver, address asset, uint256 amount, bytes calldata params, uint16 referral) external;
    function liquidationCall(address collateral, address debt, address user, uint256 debtToCover, bool receiveAToken) external;
}

struct MarketParams {
    address loanToken;
    address collateralToken;
    address oracle;
    address irm;
    uint256 lltv;
}

interface IMorphoLike {
    function flashLoan(address token, uint256 assets, bytes calldata data) external;
    function liquidate(MarketParams memory marketParams, address borrower, uint256 seizedAssets, uint256 repaidShares, bytes memory data)
        external returns (uint256, uint256);
}

interface ICometLike {
    function baseToken() external view returns (address);
    function absorb(address absorber, address[] calldata accounts) external;
    function buyCollateral(address asset, uint256 minAmount, uint256 baseAmount, address recipient) external;
}

interface IUniswapV3PoolLike {
    function token0() external view returns (address);
    function flash(address recipient, uint256 amount0, uint256 amount1, bytes calldata data) external;
}

interface ISwapRouterLike {
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
    struct ExactInputParams {
        bytes path;
        address recipient;
        uint256 deadline;
        uint256 amountIn;
        uint256 amountOutMinimum;
    }
    function exactInputSingle(ExactInputSingleParams calldata params) external payable returns (uint256);
    function exactInput(ExactInputParams calldata params) external payable returns (uint256);
}

contract KeeperLiquidator {
    uint8 public constant FLASH_NONE = 0;
    uint8 public constant FLASH_AAVE = 1;
    uint8 public constant FLASH_MORPHO = 2;
    uint8 public constant FLASH_UNISWAP = 3;
    uint8 public constant KIND_AAVE = 1;
    uint8 public constant KIND_MORPHO = 2;
    uint8 public constant KIND_COMET = 3;

    /// Where the debt token comes from: `lender` is the Aave Pool, Morpho or the Uniswap pool.
    struct Flash {
        uint8 source;
        address lender;
        uint256 amount;
    }

    /// The sale of the seized collateral: a Uniswap V3 path (collateral -> ... -> token
    /// that repays), empty for no swap. The whole balance of the path's first token is sold.
    struct Swap {
        bytes path;
        uint256 deadline;
    }

    struct AaveCall {
        address pool;
        address collateral;
        address debt;
        address user;
        uint256 debtToCover;
    }

    struct MorphoCall {
        address morpho;
        MarketParams market;
        address borrower;
        uint256 seizedAssets;
        uint256 repaidShares;
    }

    struct CometCall {
        address comet;
        address[] accounts; // absorbed first (none: buy what the protocol already holds)
        address asset;
        uint256 minAmount;
        uint256 baseAmount;
    }

    address public immutable owner;
    address public immutable router;
    address private _caller; // the only address whose callback is accepted right now

    event Liquidated(uint8 indexed kind, address indexed profitToken, uint256 profit);

    error NotOwner();
    error UnexpectedCallback(address from);
    error ProfitTooLow(uint256 balanceBefore, uint256 balanceAfter, uint256 minProfit);
    error BadFlashSource(uint8 source);

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    constructor(address router_) {
        owner = msg.sender;
        router = router_;
    }

    // ------------------------------------------------------------------ entries

    function liquidateAave(AaveCall calldata a, Flash calldata f, Swap calldata s, address profitToken, uint256 minProfit)
        external onlyOwner
    {
        uint256 before = _balance(profitToken);
        _flash(f, a.debt, abi.encode(KIND_AAVE, abi.encode(a), s));
        _finish(KIND_AAVE, profitToken, before, minProfit, a.collateral, a.debt);
    }

    function liquidateMorpho(MorphoCall calldata m, Swap calldata s, address profitToken, uint256 minProfit)
        external onlyOwner
    {
        uint256 before = _balance(profitToken);
        _caller = m.morpho;
        IMorphoLike(m.morpho).liquidate(m.market, m.borrower, m.seizedAssets, m.repaidShares, abi.encode(m.market.loanToken, s));
        _caller = address(0);
        _finish(KIND_MORPHO, profitToken, before, minProfit, m.market.collateralToken, m.market.loanToken);
    }

    function liquidateComet(CometCall calldata c, Flash calldata f, Swap calldata s, address profitToken, uint256 minProfit)
        external onlyOwner
    {
        uint256 before = _balance(profitToken);
        if (c.accounts.length > 0) ICometLike(c.comet).absorb(address(this), c.accounts);
        address base = ICometLike(c.comet).baseToken();
        _flash(f, base, abi.encode(KIND_COMET, abi.encode(c.comet, base, c.asset, c.minAmount, c.baseAmount), s));
        _finish(KIND_COMET, profitToken, before, minProfit, c.asset, base);
    }

    /// Tokens sent here by mistake (the contract keeps nothing of its own).
    function rescue(address token, address to) external onlyOwner {
        _transfer(token, to, _balance(token));
    }

    // ------------------------------------------------------------------ callbacks

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
        (address token, bytes memory inner) = abi.decode(data, (address, bytes));
        _act(inner);
        _approve(token, msg.sender, assets);
    }

    /// Morpho Blue liquidate: the seized collateral is already here; Morpho pulls the repayment after.
    function onMorphoLiquidate(uint256 repaidAssets, bytes calldata data) external {
        if (msg.sender != _caller) revert UnexpectedCallback(msg.sender);
        (address loanToken, Swap memory s) = abi.decode(data, (address, Swap));
        _swap(s);
        _approve(loanToken, msg.sender, repaidAssets);
    }

    /// Uniswap V3 pool flash: repay amount + fee by transfer before returning.
    function uniswapV3FlashCallback(uint256 fee0, uint256 fee1, bytes calldata data) external {
        if (msg.sender != _caller) revert UnexpectedCallback(msg.sender);
        (address token, uint256 amount, bytes memory inner) = abi.decode(data, (address, uint256, bytes));
        _act(inner);
        _transfer(token, msg.sender, amount + fee0 + fee1);
    }

    // ------------------------------------------------------------------ internals

    function _flash(Flash calldata f, address token, bytes memory data) internal {
        _caller = f.lender;
        if (f.source == FLASH_AAVE) {
            IAavePoolLike(f.lender).flashLoanSimple(address(this), token, f.amount, data, 0);
        } else if (f.source == FLASH_MORPHO) {
            IMorphoLike(f.lender).flashLoan(token, f.amount, abi.encode(token, data));
        } else if (f.source == FLASH_UNISWAP) {
            bool zero = IUniswapV3PoolLike(f.lender).token0() == token;
            IUniswapV3PoolLike(f.lender).flash(
                address(this), zero ? f.amount : 0, zero ? 0 : f.amount, abi.encode(token, f.amount, data)
            );
        } else if (f.source == FLASH_NONE) {
            _act(data);
        } else {
            revert BadFlashSource(f.source);
        }
        _caller = address(0);
    }

    /// The liquidation itself, with the flashed debt token in hand, then the sale.
    function _act(bytes memory data) internal {
        (uint8 kind, bytes memory call, Swap memory s) = abi.decode(data, (uint8, bytes, Swap));
        if (kind == KIND_AAVE) {
            AaveCall memory a = abi.decode(call, (AaveCall));
            uint256 have = _balance(a.debt);
            _approve(a.debt, a.pool, a.debtToCover < have ? a.debtToCover : have);
            IAavePoolLike(a.pool).liquidationCall(a.collateral, a.debt, a.user, a.debtToCover, false);
        } else {
            (address comet, address base, address asset, uint256 minAmount, uint256 baseAmount) =
                abi.decode(call, (address, address, address, uint256, uint256));
            _approve(base, comet, baseAmount);
            ICometLike(comet).buyCollateral(asset, minAmount, baseAmount, address(this));
        }
        _swap(s);
    }

    function _swap(Swap memory s) internal {
        bytes memory path = s.path;
        if (path.length == 0) return;
        address tokenIn;
        assembly {
            tokenIn := shr(96, mload(add(path, 32)))
        }
        uint256 amountIn = _balance(tokenIn);
        if (amountIn == 0) return;
        _approve(tokenIn, router, amountIn);
        if (path.length == 43) {
            address tokenOut;
            uint24 fee;
            assembly {
                fee := shr(232, mload(add(path, 52)))
                tokenOut := shr(96, mload(add(path, 55)))
            }
            ISwapRouterLike(router).exactInputSingle(
                ISwapRouterLike.ExactInputSingleParams(tokenIn, tokenOut, fee, address(this), s.deadline, amountIn, 0, 0)
            );
        } else {
            ISwapRouterLike(router).exactInput(ISwapRouterLike.ExactInputParams(path, address(this), s.deadline, amountIn, 0));
        }
    }

    function _finish(uint8 kind, address profitToken, uint256 before, uint256 minProfit, address tokenA, address tokenB)
        internal
    {
        uint256 afterBalance = _balance(profitToken);
        if (afterBalance < before || afterBalance - before < minProfit) {
            revert ProfitTooLow(before, afterBalance, minProfit);
        }
        emit Liquidated(kind, profitToken, afterBalance - before);
        _transfer(profitToken, owner, afterBalance);
        if (tokenA != profitToken) _transfer(tokenA, owner, _balance(tokenA));
        if (tokenB != profitToken && tokenB != tokenA) _transfer(tokenB, owner, _balance(tokenB));
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
