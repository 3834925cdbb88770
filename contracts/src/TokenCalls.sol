// SPDX-License-Identifier: MIT
pragma solidity 0.8.19;

/// ERC-20 calls keeper's contracts make (KeeperLiquidator, KeeperProtection): they accept
/// tokens that return nothing (USDT) and fail on `false` or on an address without code.
library TokenCalls {
    error TokenCallFailed(address token);

    function balanceOf(address token, address who) internal view returns (uint256) {
        (bool ok, bytes memory ret) = token.staticcall(abi.encodeWithSelector(0x70a08231, who));
        if (!ok || ret.length < 32) revert TokenCallFailed(token);
        return abi.decode(ret, (uint256));
    }

    function call(address token, bytes memory data) internal {
        (bool ok, bytes memory ret) = token.call(data);
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool))) || token.code.length == 0) revert TokenCallFailed(token);
    }

    function transfer(address token, address to, uint256 amount) internal {
        if (amount != 0) call(token, abi.encodeWithSelector(0xa9059cbb, to, amount));
    }

    function approve(address token, address spender, uint256 amount) internal {
        call(token, abi.encodeWithSelector(0x095ea7b3, spender, amount));
    }
}
