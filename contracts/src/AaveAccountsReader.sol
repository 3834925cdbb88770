// SPDX-License-Identifier: MIT
pragma solidity 0.8.19;

/// @title AaveAccountsReader: keeper's batch reader for Aave V3 accounts (a "lens").
/// @notice Not a stand-in for anything: keeper's own read helper. It is never deployed.
///         keeper runs it with `eth_call` and a state override that places this runtime
///         code at an unused address for the duration of the call, so the same read works
///         on any node that supports state overrides (geth, erigon, reth, anvil and the
///         big providers), and falls back to Multicall3 where one does not.
/// @dev For each account it returns, as a flat uint256 list, exactly what keeper's
///      off-chain copy of Aave's GenericLogic needs, in the order the Python side reads:
///        userConfig, eModeCategory, then for each reserve id i (ascending) whose bits are
///        set in userConfig: if borrowing -> variable debt scaled balance, then (only when
///        hasStable[i]) stable debt balance; if used as collateral -> aToken scaled balance.
interface IPoolReads {
    function getUserConfiguration(address user) external view returns (uint256);
    function getUserEMode(address user) external view returns (uint256);
}

interface IBalances {
    function scaledBalanceOf(address user) external view returns (uint256);
    function balanceOf(address user) external view returns (uint256);
}

contract AaveAccountsReader {
    /// @param tokens per reserve id i: tokens[3i] aToken, tokens[3i+1] variable debt token,
    ///        tokens[3i+2] stable debt token
    /// @param stableMask bit i set when reserve i has stable debt outstanding
    function read(address pool, address[] calldata tokens, uint256 stableMask, address[] calldata users)
        external
        view
        returns (uint256[] memory out)
    {
        uint256 n = tokens.length / 3;
        // worst case per user: 2 + 3 words per reserve
        out = new uint256[](users.length * (2 + 3 * n));
        uint256 k = 0;
        for (uint256 u = 0; u < users.length; ++u) {
            address user = users[u];
            uint256 cfg = IPoolReads(pool).getUserConfiguration(user);
            out[k++] = cfg;
            out[k++] = IPoolReads(pool).getUserEMode(user);
            for (uint256 i = 0; i < n && (cfg >> (2 * i)) != 0; ++i) {
                uint256 bits = (cfg >> (2 * i)) & 3;
                if (bits & 1 != 0) {
                    out[k++] = IBalances(tokens[3 * i + 1]).scaledBalanceOf(user);
                    if ((stableMask >> i) & 1 != 0) out[k++] = IBalances(tokens[3 * i + 2]).balanceOf(user);
                }
                if (bits & 2 != 0) out[k++] = IBalances(tokens[3 * i]).scaledBalanceOf(user);
            }
        }
        assembly {
            mstore(out, k) // shrink the array to what was written
        }
    }
}
