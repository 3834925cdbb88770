"""The signing key: loaded once, held as a Secret, used only to sign (locally, eth-account).

Sources, exactly one of:

* ``KEEPER_PRIVATE_KEY`` in the environment (read by keeper.config into ``Config.private_key``);
* ``[executor] keystore`` (a V3 keystore JSON, as written by geth, clef or ``cast wallet``)
  + ``password_file`` (its password; one trailing newline is ignored).

The key (and the keystore password) are registered with :func:`keeper.log.register_secret`
as soon as they are read, so no log line can carry them even by accident; ``repr``/``str``
of a Signer show only its address.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coincurve import PrivateKey
from eth_account import Account
from eth_hash.auto import keccak

from keeper.config import ENV_PRIVATE_KEY, Secret
from keeper.errors import ConfigError, ExecutionError
from keeper.log import register_secret


@dataclass(frozen=True, slots=True)
class SignedTx:
    raw: str  # 0x-hex of the signed, RLP-encoded transaction (what eth_sendRawTransaction takes)
    hash: str  # 0x-hex transaction hash


class Signer:
    """One account's key. ``address`` is public; the key is never shown."""

    __slots__ = ("_key", "_pk", "address")

    def __init__(self, key: Secret):
        if not isinstance(key, Secret):
            raise TypeError("Signer takes a keeper.config.Secret")
        text = key.reveal()
        register_secret(text)  # before anything can fail and print it
        try:
            account = Account.from_key(text)
        except Exception:  # noqa: BLE001  several types; never chained: may quote the key
            raise ConfigError("not a valid secp256k1 private key", key=ENV_PRIVATE_KEY) from None
        self._key = key
        self._pk: PrivateKey | None = None  # coincurve's key, made on first use (never shown either)
        self.address: str = account.address

    def sign(self, tx: dict[str, Any]) -> SignedTx:
        """Sign a transaction dict (EIP-1559 fields, ``chainId``, ``nonce``) locally. A type-2
        transaction without an access list is encoded here (RLP, keccak, libsecp256k1 through
        coincurve: about 0.1 ms, where eth-account's validation takes milliseconds; the
        bytes are the same, tested); anything else goes through eth-account."""
        if tx.get("type") == 2 and not tx.get("accessList") and set(tx) <= _EIP1559:
            try:
                if self._pk is None:
                    self._pk = PrivateKey(bytes.fromhex(self._key.reveal().removeprefix("0x")))
                return _sign_1559(tx, self._pk)
            except (TypeError, ValueError, OverflowError) as e:  # a malformed dict (our bug); never the key
                raise ExecutionError(f"cannot sign the transaction: {type(e).__name__}: {e}") from None
        try:
            signed = Account.sign_transaction(tx, self._key.reveal())
        except Exception as e:  # noqa: BLE001  a malformed dict (our bug); never the key
            raise ExecutionError(f"cannot sign the transaction: {type(e).__name__}: {e}") from None
        return SignedTx(raw="0x" + bytes(signed.raw_transaction).hex(),
                        hash="0x" + bytes(signed.hash).hex())

    def __repr__(self) -> str:
        return f"Signer({self.address})"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # never pickled (multiprocessing, caches): it would carry the key
        raise TypeError("a Signer cannot be pickled")


_EIP1559 = {"type", "chainId", "nonce", "to", "value", "data", "gas", "maxFeePerGas",
            "maxPriorityFeePerGas", "accessList"}


def _rlp(x: int | bytes | list) -> bytes:
    """RLP (Ethereum yellow paper, appendix B) of ints, byte strings and lists of them."""
    if isinstance(x, list):
        body = b"".join(_rlp(i) for i in x)
        return _length(len(body), 0xC0) + body
    if isinstance(x, int):
        x = x.to_bytes((x.bit_length() + 7) // 8, "big")
    if len(x) == 1 and x[0] < 0x80:
        return x
    return _length(len(x), 0x80) + x


def _length(n: int, offset: int) -> bytes:
    if n < 56:
        return bytes([offset + n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(b)]) + b


def _sign_1559(tx: dict[str, Any], key: PrivateKey) -> SignedTx:
    """EIP-1559: ``0x02 || rlp([chainId, nonce, tip, maxFee, gas, to, value, data, accessList,
    yParity, r, s])``, signed over the keccak of the same without the signature."""
    ints = [tx["chainId"], tx["nonce"], tx["maxPriorityFeePerGas"], tx["maxFeePerGas"], tx["gas"]]
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in [*ints, tx.get("value", 0)]):
        raise ValueError("chainId, nonce, fees, gas and value must be non-negative ints")
    to = bytes.fromhex(tx["to"][2:]) if tx.get("to") else b""
    if len(to) not in (0, 20):
        raise ValueError(f"not an address: {tx['to']!r}")
    data = tx.get("data", b"")
    data = bytes.fromhex(data[2:]) if isinstance(data, str) else bytes(data)
    body = [*ints, to, tx.get("value", 0), data, []]
    digest = keccak(b"\x02" + _rlp(body))
    sig = key.sign_recoverable(digest, hasher=None)
    r, s_, v = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    raw = b"\x02" + _rlp([*body, v, r, s_])
    return SignedTx(raw="0x" + raw.hex(), hash="0x" + keccak(raw).hex())


def load_signer(
    private_key: Secret | None, keystore: Path | None, password_file: Path | None
) -> Signer:
    """The Signer from the configured source. ConfigError names what is missing or wrong."""
    if private_key is not None and keystore is not None:
        raise ConfigError(
            f"two signing keys: {ENV_PRIVATE_KEY} is set and so is executor.keystore; keep one",
            key="executor.keystore",
        )
    if private_key is not None:
        return Signer(private_key)
    if keystore is None:
        raise ConfigError(
            f"no signing key: set {ENV_PRIVATE_KEY} in the environment, or executor.keystore"
            " and executor.password_file in the config",
            key="executor.keystore",
        )
    if password_file is None:
        raise ConfigError("executor.keystore needs executor.password_file", key="executor.password_file")
    data = _read_keystore(keystore)
    password = _read_text(password_file, "executor.password_file").removesuffix("\n").removesuffix("\r")
    register_secret(password)
    try:
        key = Account.decrypt(data, password)
    except ValueError as e:  # "MAC mismatch" is a wrong password; other texts: a bad file
        why = "wrong password" if "MAC" in str(e) else f"not a usable keystore ({e})"
        raise ConfigError(f"cannot decrypt the keystore: {why}", path=str(keystore),
                          key="executor.keystore") from None
    return Signer(Secret("0x" + bytes(key).hex()))


def _read_text(path: Path, key: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", path=str(path), key=key) from None
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or type(e).__name__
        raise ConfigError(f"cannot read the file: {reason}", path=str(path), key=key) from None


def _read_keystore(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(_read_text(path, "executor.keystore"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"keystore is not JSON: {e.msg} (line {e.lineno})", path=str(path),
                          key="executor.keystore") from None
    if not isinstance(data, dict) or not isinstance(data.get("crypto", data.get("Crypto")), dict):
        raise ConfigError("not a V3 keystore (no crypto section)", path=str(path), key="executor.keystore")
    return data
