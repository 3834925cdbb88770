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

from eth_account import Account

from keeper.config import ENV_PRIVATE_KEY, Secret
from keeper.errors import ConfigError, ExecutionError
from keeper.log import register_secret


@dataclass(frozen=True, slots=True)
class SignedTx:
    raw: str  # 0x-hex of the signed, RLP-encoded transaction (what eth_sendRawTransaction takes)
    hash: str  # 0x-hex transaction hash


class Signer:
    """One account's key. ``address`` is public; the key is never shown."""

    __slots__ = ("_key", "address")

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
        self.address: str = account.address

    def sign(self, tx: dict[str, Any]) -> SignedTx:
        """Sign a transaction dict (EIP-1559 fields, ``chainId``, ``nonce``) locally."""
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
