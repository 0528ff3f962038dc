"""Signing and verification keys: PEM keys and certificates, and cosign's encrypted key files (the file
format itself is :mod:`attestation.cosign_key`).

Supported algorithms (anything else is refused when the key is loaded, never at verification time):

* ECDSA P-256/SHA-256, P-384/SHA-384, P-521/SHA-512, ASN.1 DER signatures. Verification of P-384 and
  P-521 also accepts SHA-256, because Tekton Chains' x509 signer and cosign hash with SHA-256 whatever
  the curve.
* Ed25519 (pure).
* RSA >= 2048 bits: signs PKCS#1 v1.5/SHA-256; verifies PKCS#1 v1.5 or PSS (SHA-256, any salt length).

A key's ``keyid`` is the OpenSSH SHA-256 fingerprint ``SHA256:<unpadded base64>``, as Tekton Chains puts in
DSSE envelopes (``ssh.FingerprintSHA256``) and as sigstore-go accepts. It is a hint for humans and for
ordering verification attempts, never a trust decision.

Private keys are read from PEM, including cosign's encrypted key files (:mod:`attestation.cosign_key`),
with the password from a file, ``COSIGN_PASSWORD`` or a prompt; new key pairs are written as cosign does.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from attestation import cosign_key, pem
from attestation.errors import KeyLoadError, PasswordRequired, WrongPasswordError
from attestation.files import read_bounded
from attestation.limits import MAX_KEY_FILE_BYTES

# Imported where used, not here: cryptography.x509 (certificates), nacl and scrypt (cosign's encrypted
# private keys) and getpass would cost every process start (docs/performance.md), and verifying with a
# PEM public key, the gate's common case, needs none of them.

PublicKeyType = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
PrivateKeyType = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

# Labels whose keys need a password: cosign's, PKCS#8 encrypted, and OpenSSL "traditional" encrypted PEM.
_PKCS8_ENCRYPTED_LABEL = "ENCRYPTED PRIVATE KEY"
_PRIVATE_LABELS = frozenset({"PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", _PKCS8_ENCRYPTED_LABEL})
_PUBLIC_LABELS = frozenset({"PUBLIC KEY", "RSA PUBLIC KEY"})
_CERT_LABELS = frozenset({"CERTIFICATE"})

_MIN_RSA_BITS = 2048

_CURVE_HASHES: dict[str, tuple[type[hashes.HashAlgorithm], ...]] = {
    "secp256r1": (hashes.SHA256,),
    "secp384r1": (hashes.SHA384, hashes.SHA256),
    "secp521r1": (hashes.SHA512, hashes.SHA256),
}
_CURVE_NAMES = {"secp256r1": "p256", "secp384r1": "p384", "secp521r1": "p521"}


def _check_public_key(key: Any, source: str) -> PublicKeyType:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVE_HASHES:
            raise KeyLoadError(
                f"{source}: unsupported elliptic curve {key.curve.name} (use P-256, P-384 or P-521)"
            )
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise KeyLoadError(
                f"{source}: RSA key of {key.key_size} bits is too weak (minimum {_MIN_RSA_BITS})"
            )
        return key
    raise KeyLoadError(
        f"{source}: unsupported key type {type(key).__name__} (use ECDSA P-256/P-384/P-521, Ed25519 or RSA)"
    )


def ssh_fingerprint(key: PublicKeyType) -> str:
    """``SHA256:<unpadded std base64 of sha256(SSH wire-format public key)>`` (ssh.FingerprintSHA256)."""
    openssh = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    blob = base64.b64decode(openssh.split(b" ")[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


class PublicKey:
    """A verification key, parsed once; :meth:`verify` never parses and never raises for a bad signature."""

    __slots__ = ("_hashes", "_key", "algorithm", "keyid", "source", "spki_der")

    def __init__(self, key: PublicKeyTypes, *, source: str = "public key") -> None:
        """``key`` of any kind a certificate can carry; one this class does not support is a
        :class:`KeyLoadError` naming ``source``."""
        checked = self._key = _check_public_key(key, source)
        self.source = source
        self.spki_der: bytes = checked.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.keyid: str = ssh_fingerprint(checked)
        self._hashes: tuple[hashes.HashAlgorithm, ...] = ()
        if isinstance(checked, ec.EllipticCurvePublicKey):
            self._hashes = tuple(h() for h in _CURVE_HASHES[checked.curve.name])
            self.algorithm: str = f"ecdsa-{_CURVE_NAMES[checked.curve.name]}-{self._hashes[0].name}"
        elif isinstance(checked, ed25519.Ed25519PublicKey):
            self.algorithm = "ed25519"
        else:
            self.algorithm = f"rsa-{checked.key_size}-pkcs1v15-sha256"

    @property
    def crypto_key(self) -> PublicKeyType:
        """The underlying ``cryptography`` key object."""
        return self._key

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` is a valid signature of ``data`` by this key."""
        key = self._key
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                for algorithm in self._hashes:
                    try:
                        key.verify(signature, data, ec.ECDSA(algorithm))
                        return True
                    except InvalidSignature:
                        continue
                return False
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, data)
                return True
            try:
                key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
                return True
            except InvalidSignature:
                pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
                key.verify(signature, data, pss, hashes.SHA256())
                return True
        except (InvalidSignature, ValueError):
            return False

    def to_pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM, the format of ``cosign.pub``."""
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.spki_der == self.spki_der

    def __hash__(self) -> int:
        return hash(self.spki_der)

    def __repr__(self) -> str:
        return f"PublicKey({self.algorithm}, keyid={self.keyid!r}, source={self.source!r})"


@runtime_checkable
class Signer(Protocol):
    """Anything that signs bytes: a key in memory, a SPIRE SVID, a KMS."""

    keyid: str
    public_key: PublicKey

    def sign(self, data: bytes) -> bytes: ...


class PrivateKeySigner:
    """Signs with a private key held in memory."""

    __slots__ = ("_key", "keyid", "public_key")

    def __init__(self, key: PrivateKeyType, *, source: str = "private key") -> None:
        if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
            raise KeyLoadError(
                f"{source}: unsupported key type {type(key).__name__} "
                "(use ECDSA P-256/P-384/P-521, Ed25519 or RSA)"
            )
        self.public_key = PublicKey(key.public_key(), source=source)
        self._key = key
        self.keyid: str = self.public_key.keyid

    @property
    def crypto_key(self) -> PrivateKeyType:
        return self._key

    def sign(self, data: bytes) -> bytes:
        key = self._key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(_CURVE_HASHES[key.curve.name][0]()))
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def __repr__(self) -> str:
        return f"PrivateKeySigner({self.public_key.algorithm}, keyid={self.keyid!r})"


def load_public_key(data: bytes, *, source: str) -> PublicKey:
    """A public key from PEM: SubjectPublicKeyInfo (``cosign.pub``), PKCS#1 RSA, or a certificate (its key).

    The file must hold exactly one PEM block, so a chain or bundle is never silently reduced to one key.
    """
    label, block = pem.single_block(data, source, "public key or certificate")
    try:
        if label in _PUBLIC_LABELS:
            key: Any = serialization.load_pem_public_key(block)
        elif label in _CERT_LABELS:
            from cryptography import x509

            key = x509.load_pem_x509_certificate(block).public_key()
        elif label in _PRIVATE_LABELS or label in cosign_key.LABELS:
            raise KeyLoadError(f"{source}: holds a private key ({label}); give the public key")
        else:
            raise KeyLoadError(f"{source}: PEM block {label!r} is not a public key or certificate")
    except (ValueError, UnsupportedAlgorithm) as err:
        raise KeyLoadError(f"{source}: unreadable {label}: {_one_line(err)}") from None
    return PublicKey(key, source=source)


def is_encrypted_private_key(data: bytes) -> bool:
    """True when the (first) private key PEM block in ``data`` needs a password."""
    if len(data) > MAX_KEY_FILE_BYTES or data.count(b"-----BEGIN ") > pem.MAX_PEM_BLOCKS:
        return False  # the loader itself reports the oversized file
    for label, block in pem.PEM_BLOCK.findall(data):
        name = label.decode("ascii")
        if name in cosign_key.LABELS or name == _PKCS8_ENCRYPTED_LABEL:
            return True
        if name in _PRIVATE_LABELS:
            return b"Proc-Type: 4,ENCRYPTED" in block
    return False


def load_private_key(data: bytes, *, source: str, password: bytes | None = None) -> PrivateKeySigner:
    """A signer from PEM: PKCS#8 (``x509.pem`` of Chains), SEC1 EC, PKCS#1 RSA, password-protected PKCS#8,
    or a cosign encrypted key. ``password`` is only used for encrypted keys."""
    label, block = pem.single_block(data, source, "private key")
    if label in cosign_key.LABELS:
        if password is None:
            raise KeyLoadError(f"{source}: the cosign key is encrypted and no password was given")
        key: Any = cosign_key.decrypt_private_key(block, password, source=source)
    elif label in _PRIVATE_LABELS:
        encrypted = label == _PKCS8_ENCRYPTED_LABEL or b"Proc-Type: 4,ENCRYPTED" in block
        if encrypted and password is None:
            raise KeyLoadError(f"{source}: the private key is encrypted and no password was given")
        try:
            key = serialization.load_pem_private_key(block, password=password if encrypted else None)
        except ValueError as err:
            msg = str(err).lower()
            if encrypted and ("password" in msg or "decrypt" in msg):
                raise WrongPasswordError(f"wrong password for {source}: decryption failed") from None
            raise KeyLoadError(f"{source}: unreadable {label}: {_one_line(err)}") from None
        except (TypeError, UnsupportedAlgorithm) as err:
            raise KeyLoadError(f"{source}: unreadable {label}: {_one_line(err)}") from None
    elif label in _PUBLIC_LABELS or label in _CERT_LABELS:
        raise KeyLoadError(f"{source}: holds a {label.lower()}, not a private key")
    else:
        raise KeyLoadError(f"{source}: PEM block {label!r} is not a supported private key")
    return PrivateKeySigner(key, source=source)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def generate_cosign_key_pair(password: bytes) -> tuple[bytes, bytes]:
    """A new ECDSA P-256 key pair like ``cosign generate-key-pair``: (encrypted private PEM, public PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return cosign_key.encrypt_private_key(key, password), public


def write_key_pair(prefix: str, password: bytes, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``<prefix>.key`` (mode 0600) and ``<prefix>.pub``; never replace existing files unless told."""
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    if not overwrite:
        for path in (key_path, pub_path):
            if path.exists():
                raise KeyLoadError(f"{path} already exists; refusing to overwrite it")
    private_pem, public_pem = generate_cosign_key_pair(password)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(key_path, flags, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(private_pem)
        fd = os.open(pub_path, flags, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(public_pem)
    except FileExistsError as err:
        raise KeyLoadError(f"{err.filename} already exists; refusing to overwrite it") from None
    except OSError as err:
        raise KeyLoadError(f"cannot write key pair {prefix}: {err.strerror} ({err.filename})") from None
    return key_path, pub_path


# ----------------------------------------------------------------------------------------------------------
# files and passwords


def read_key_file(path: str | os.PathLike[str], *, what: str = "key file") -> bytes:
    """Read a key/certificate file, bounded by :data:`MAX_KEY_FILE_BYTES`."""
    return read_bounded(path, MAX_KEY_FILE_BYTES, what, error=KeyLoadError)


def _strip_one_newline(data: bytes) -> bytes:
    if data.endswith(b"\r\n"):
        return data[:-2]
    if data.endswith(b"\n"):
        return data[:-1]
    return data


def key_password(
    source: str,
    *,
    password_file: str | os.PathLike[str] | None = None,
    prompt: bool = True,
) -> bytes:
    """The password for an encrypted key: the contents of ``password_file`` when given (one trailing
    newline dropped), else ``COSIGN_PASSWORD`` (an empty value is a valid password, as in cosign), else a
    prompt when ``prompt`` and stdin is a terminal; else :class:`PasswordRequired`."""
    if password_file is not None:
        data = read_key_file(password_file, what="password file")
        return _strip_one_newline(data)
    env = os.environ.get("COSIGN_PASSWORD")
    if env is not None:
        return env.encode("utf-8")
    if prompt and sys.stdin is not None and sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"Enter password for private key {source}: ").encode("utf-8")
    raise PasswordRequired(f"{source} is encrypted: set COSIGN_PASSWORD (no terminal to prompt on)")


def load_private_key_file(
    path: str | os.PathLike[str],
    *,
    password_file: str | os.PathLike[str] | None = None,
    prompt: bool = True,
) -> PrivateKeySigner:
    """Load a private key file; a password is asked for only when the key is encrypted."""
    source = os.fspath(path)
    data = read_key_file(path)
    password = None
    if is_encrypted_private_key(data):
        password = key_password(source, password_file=password_file, prompt=prompt)
    return load_private_key(data, source=source, password=password)


def load_public_key_file(path: str | os.PathLike[str]) -> PublicKey:
    """Load a public key or certificate PEM file."""
    return load_public_key(read_key_file(path), source=os.fspath(path))
