"""Deploy keeper's liquidator contract (``contracts/src/KeeperLiquidator.sol``) from the
configured key, as the executors sign: locally, after a simulation.

::

    address = await deploy_liquidator(rpc, signer, router)   # -> checksummed address

Steps: creation code from npm solc's build of ``contracts/src`` (``build/contracts.json``,
compiled on first use by ``keeper/devnet/compile.js``) + the SwapRouter address; simulate the
creation with ``eth_call`` (refused if it reverts or yields no code); estimate gas; EIP-1559
fees (``2 * baseFee + tip``); sign; send; wait for the receipt; check that the code is there
and that ``owner()`` is the signer and ``router()`` the router. Every failure is an
ExecutionError naming the step.
"""

from __future__ import annotations

import asyncio

from eth_utils import keccak, to_checksum_address

from keeper.chain.rpc import Rpc
from keeper.dex.liquidator import deploy_code
from keeper.errors import ExecutionError, KeeperError
from keeper.executors.signer import Signer

TIP_WEI = 10**9
GAS_MARGIN_NUM, GAS_MARGIN_DEN = 6, 5  # +20% over the estimate
RECEIPT_TIMEOUT_S = 120.0


def creation_code(router: str) -> str:
    from keeper.devnet.artifacts import load_own  # the solc build of contracts/src (as the lens)

    return deploy_code(load_own("KeeperLiquidator").bytecode, router)


async def _view_address(rpc: Rpc, contract: str, signature: str) -> str:
    raw = await rpc.call(contract, keccak(text=signature)[:4])
    return to_checksum_address(raw[12:32])


async def deploy_liquidator(rpc: Rpc, signer: Signer, router: str, chain_id: int | None = None) -> str:
    return await deploy_checked(rpc, signer, creation_code(router),
                                {"owner()": signer.address, "router()": router}, chain_id)


async def deploy_checked(rpc: Rpc, signer: Signer, code: str, expect: dict[str, str],
                         chain_id: int | None = None) -> str:
    """Deploy ``code`` (creation code with its arguments) as above; then each view in
    ``expect`` (a signature returning an address) must return the address given."""
    receipt = await send_simulated(rpc, signer, None, code, chain_id, "deployment")
    address = to_checksum_address(receipt["contractAddress"])
    for view, want in expect.items():
        if await _view_address(rpc, address, view) != to_checksum_address(want):
            raise ExecutionError(f"the contract at {address} does not return {want} from {view}")
    return address


async def send_simulated(rpc: Rpc, signer: Signer, to: str | None, data: str, chain_id: int | None = None,
                         what: str = "transaction") -> dict:
    """Simulate (eth_call), estimate, sign, send and wait for one transaction from ``signer``
    (``to`` None: a creation, whose simulation must yield code); its receipt, or ExecutionError."""
    sender = signer.address
    call = {"from": sender, "data": data, **({"to": to} if to else {})}
    try:
        runtime = await rpc.request("eth_call", [call, "latest"])
    except KeeperError as e:
        raise ExecutionError(f"{what} simulation reverted: {e}") from e
    if to is None and (not runtime or runtime == "0x"):
        raise ExecutionError(f"{what} simulation produced no contract code")
    try:
        gas = int(await rpc.request("eth_estimateGas", [call]), 16)
        nonce = int(await rpc.request("eth_getTransactionCount", [sender, "pending"]), 16)
        base_fee = int((await rpc.block("latest"))["baseFeePerGas"], 16)
        chain = chain_id if chain_id is not None else await rpc.chain_id()
    except KeeperError as e:
        raise ExecutionError(f"cannot prepare the {what}: {e}") from e
    tx = {"chainId": chain, "nonce": nonce, "gas": gas * GAS_MARGIN_NUM // GAS_MARGIN_DEN,
          "maxFeePerGas": 2 * base_fee + TIP_WEI, "maxPriorityFeePerGas": TIP_WEI,
          "value": 0, "data": data, "type": 2, **({"to": to} if to else {})}  # no "to": a creation
    signed = signer.sign(tx)
    try:
        await rpc.request("eth_sendRawTransaction", [signed.raw])
        receipt = await _receipt(rpc, signed.hash)
    except KeeperError as e:
        raise ExecutionError(f"{what} transaction failed: {e}") from e
    if int(receipt["status"], 16) != 1:
        raise ExecutionError(f"{what} reverted (tx {signed.hash})")
    return receipt


async def _receipt(rpc: Rpc, tx_hash: str) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RECEIPT_TIMEOUT_S
    while True:
        receipt = await rpc.request("eth_getTransactionReceipt", [tx_hash])
        if receipt is not None:
            return receipt
        if loop.time() > deadline:
            raise ExecutionError(f"deployment {tx_hash} not mined within {RECEIPT_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.2)
