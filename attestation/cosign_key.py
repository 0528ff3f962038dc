"""cosign's encrypted private key file, as cosign reads and writes it: ``ENCRYPTED SIGSTORE PRIVATE KEY``
(formerly ``ENCRYPTED COSIGN PRIVATE KEY``), a PEM block whose body is JSON: scrypt parameters and salt, a
NaCl secretbox nonce, and the secretbox of the PKCS#8 DER private key under ``scrypt(password)``.

nacl and scrypt are imported where used: only an encrypted key needs them.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from attestation import pem
from attestation.errors import KeyLoadError, WrongPasswordError
from attestation.limits import MAX_KEY_FILE_BYTES, MAX_PASSWORD_BYTES, load_json

PEM_LABEL = "ENCRYPTED SIGSTORE PRIVATE KEY"
LEGACY_PEM_LABEL = "ENCRYPTED COSIGN PRIVATE KEY"
LABELS = frozenset({PEM_LABEL, LEGACY_PEM_LABEL})

# go-securesystemslib "Standard" parameters, what cosign writes today.
SCRYPT_N = 65536
SCRYPT_R = 8
SCRYPT_P = 1
_SALT_BYTES = 32
# Decryption bounds: cosign has written N = 2^15 and 2^16; allow up to 2^17 with r = 8 (128 MiB of scrypt
# memory) and nothing that could be used to make us allocate more.
_MAX_SCRYPT_MEMORY = 128 * 1024 * 1024 * 2
# nacl.secret.SecretBox.KEY_SIZE and NONCE_SIZE (XSalsa20-Poly1305), fixed by the cosign key format.
_SECRETBOX_KEY_BYTES = 32
_SECRETBOX_NONCE_BYTES = 24


def _b64field(obj: Any, path: str, source: str) -> bytes:
    if not isinstance(obj, str):
        raise KeyLoadError(f"{source}: cosign key field {path} is missing or not a string")
    try:
        return base64.b64decode(obj, validate=True)
    except ValueError:
        raise KeyLoadError(f"{source}: cosign key field {path} is not valid base64") from None


def _field(obj: Any, key: str, path: str, source: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise KeyLoadError(f"{source}: cosign key has no field {path}")
    return obj[key]


def _scrypt_params(params: Any, source: str) -> tuple[int, int, int]:
    values = []
    for name in ("N", "r", "p"):
        v = _field(params, name, f"kdf.params.{name}", source)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise KeyLoadError(f"{source}: cosign key field kdf.params.{name} is not a positive integer")
        values.append(v)
    n, r, p = values
    if n < 2 or n & (n - 1) or 128 * n * r * p > _MAX_SCRYPT_MEMORY or p > 16:
        raise KeyLoadError(f"{source}: cosign key has unsupported scrypt parameters N={n} r={r} p={p}")
    return n, r, p


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=_SECRETBOX_KEY_BYTES, n=n, r=r, p=p).derive(password)


def decrypt_private_key(pem_data: bytes, password: bytes, *, source: str = "cosign key") -> PrivateKeyTypes:
    """Decrypt a cosign ``ENCRYPTED SIGSTORE PRIVATE KEY`` PEM block to a private key object."""
    import nacl.exceptions
    import nacl.secret

    label, block = pem.single_block(pem_data, source, "cosign private key")
    if label not in LABELS:
        raise KeyLoadError(f"{source}: PEM block {label!r} is not a cosign encrypted key")
    if len(password) > MAX_PASSWORD_BYTES:
        raise KeyLoadError(f"{source}: password is longer than {MAX_PASSWORD_BYTES} bytes")
    body = _pem_body(block, source)
    try:
        doc = load_json(body, max_bytes=MAX_KEY_FILE_BYTES, what=f"{source} (cosign key JSON)")
    except KeyLoadError:
        raise
    except Exception as err:  # InputError/LimitExceeded from the loader, re-labelled for key files
        raise KeyLoadError(str(err)) from None
    kdf = _field(doc, "kdf", "kdf", source)
    if _field(kdf, "name", "kdf.name", source) != "scrypt":
        raise KeyLoadError(f"{source}: cosign key uses unsupported kdf {kdf.get('name')!r} (expected scrypt)")
    n, r, p = _scrypt_params(_field(kdf, "params", "kdf.params", source), source)
    salt = _b64field(_field(kdf, "salt", "kdf.salt", source), "kdf.salt", source)
    cipher = _field(doc, "cipher", "cipher", source)
    if _field(cipher, "name", "cipher.name", source) != "nacl/secretbox":
        raise KeyLoadError(
            f"{source}: cosign key uses unsupported cipher {cipher.get('name')!r} (expected nacl/secretbox)"
        )
    nonce = _b64field(_field(cipher, "nonce", "cipher.nonce", source), "cipher.nonce", source)
    if len(nonce) != _SECRETBOX_NONCE_BYTES:
        raise KeyLoadError(f"{source}: cosign key nonce must be {_SECRETBOX_NONCE_BYTES} bytes")
    ciphertext = _b64field(_field(doc, "ciphertext", "ciphertext", source), "ciphertext", source)
    box = nacl.secret.SecretBox(_scrypt(password, salt, n, r, p))
    try:
        plaintext = box.decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError:
        raise WrongPasswordError(f"wrong password for {source}: decryption failed") from None
    try:
        return serialization.load_der_private_key(plaintext, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise KeyLoadError(
            f"{source}: decrypted cosign key is not a PKCS#8 private key: {_one_line(err)}"
        ) from None


def encrypt_private_key(key: PrivateKeyTypes, password: bytes, *, scrypt_n: int = SCRYPT_N) -> bytes:
    """``ENCRYPTED SIGSTORE PRIVATE KEY`` PEM readable by cosign (``scrypt_n`` must stay 32768 or 65536 for
    cosign to accept it; smaller values are for tests only)."""
    import nacl.secret
    import nacl.utils

    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    salt = os.urandom(_SALT_BYTES)
    nonce = nacl.utils.random(_SECRETBOX_NONCE_BYTES)
    box = nacl.secret.SecretBox(_scrypt(password, salt, scrypt_n, SCRYPT_R, SCRYPT_P))
    sealed = box.encrypt(der, nonce).ciphertext  # MAC || ciphertext, as Go's secretbox.Seal

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode("ascii")

    # Field order of go-securesystemslib's encrypted.go structs, so files look like cosign's.
    document = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": scrypt_n, "r": SCRYPT_R, "p": SCRYPT_P},
            "salt": b64(salt),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
        "ciphertext": b64(sealed),
    }
    body = json.dumps(document, separators=(",", ":")).encode("ascii")
    return pem.encode(PEM_LABEL, body)


def _pem_body(block: bytes, source: str) -> bytes:
    lines = block.splitlines()[1:-1]
    if any(b":" in line for line in lines):
        raise KeyLoadError(f"{source}: unexpected PEM headers in a cosign key")
    try:
        return base64.b64decode(b"".join(line.strip() for line in lines), validate=True)
    except ValueError:
        raise KeyLoadError(f"{source}: PEM body is not valid base64") from None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
