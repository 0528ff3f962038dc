"""Keys: PEM loading, keyids, signing algorithms (attestation.keys)."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from attestation import keys
from attestation.errors import KeyLoadError
from attestation.keys import PrivateKeySigner, PublicKey

DATA = b"DSSEv1 1 t 1 x"


def _ssh_string(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


def _ssh_mpint(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "big")  # leading zero byte when the top bit is set
    return _ssh_string(raw)


def _ssh_wire_blob(key: object) -> bytes:
    """RFC 4253 / 5656 / 8709 public key blobs, written out by hand."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        ident = {"secp256r1": b"nistp256", "secp384r1": b"nistp384", "secp521r1": b"nistp521"}[key.curve.name]
        point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return _ssh_string(b"ecdsa-sha2-" + ident) + _ssh_string(ident) + _ssh_string(point)
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return _ssh_string(b"ssh-ed25519") + _ssh_string(raw)
    assert isinstance(key, rsa.RSAPublicKey)
    numbers = key.public_numbers()
    return _ssh_string(b"ssh-rsa") + _ssh_mpint(numbers.e) + _ssh_mpint(numbers.n)


def test_keyid_is_the_ssh_sha256_fingerprint(signer: PrivateKeySigner) -> None:
    blob = _ssh_wire_blob(signer.public_key.crypto_key)
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert signer.keyid == signer.public_key.keyid == expected
    # cross-check the hand-written blob against cryptography's OpenSSH encoding
    openssh = signer.public_key.crypto_key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert base64.b64decode(openssh.split()[1]) == blob


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_keyid_matches_ssh_keygen(signer: PrivateKeySigner, tmp_path: Path) -> None:
    pub = tmp_path / "k.pub"
    pub.write_bytes(
        signer.public_key.crypto_key.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)], capture_output=True, check=True
    )
    assert out.stdout.split()[1].decode() == signer.keyid


def test_load_private_key_formats(signer: PrivateKeySigner) -> None:
    key = signer.crypto_key
    formats = [serialization.PrivateFormat.PKCS8]
    if not isinstance(key, ed25519.Ed25519PrivateKey):  # Ed25519 has no traditional PEM form
        formats.append(serialization.PrivateFormat.TraditionalOpenSSL)  # SEC1 for EC, PKCS#1 for RSA
    for fmt in formats:
        pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        loaded = keys.load_private_key(pem, source="x.pem")
        assert loaded.keyid == signer.keyid
        assert signer.public_key.verify(loaded.sign(DATA), DATA)


def test_load_public_key_from_spki_and_certificate(signer: PrivateKeySigner) -> None:
    spki = signer.public_key.to_pem()
    assert spki.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    assert keys.load_public_key(spki, source="cosign.pub") == signer.public_key
    cert_pem = _self_signed(signer.crypto_key).public_bytes(serialization.Encoding.PEM)
    from_cert = keys.load_public_key(cert_pem, source="cert.pem")
    assert from_cert == signer.public_key and from_cert.keyid == signer.keyid


def _self_signed(key: object) -> x509.Certificate:
    import datetime

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.datetime.now(datetime.UTC)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, algorithm)  # type: ignore[arg-type]
    )


def test_sign_verify_for_every_key_type_and_rejects_other_data(signer: PrivateKeySigner) -> None:
    sig = signer.sign(DATA)
    assert signer.public_key.verify(sig, DATA)
    assert not signer.public_key.verify(sig, DATA + b"!")
    assert not signer.public_key.verify(b"", DATA)
    assert not signer.public_key.verify(b"\x00" * len(sig), DATA)


@pytest.mark.parametrize(
    ("name", "algorithm"),
    [
        ("ecdsa-p256", "ecdsa-p256-sha256"),
        ("ecdsa-p384", "ecdsa-p384-sha384"),
        ("ecdsa-p521", "ecdsa-p521-sha512"),
        ("ed25519", "ed25519"),
        ("rsa-2048", "rsa-2048-pkcs1v15-sha256"),
    ],
)
def test_signing_algorithms_are_the_documented_ones(private_keys: dict, name: str, algorithm: str) -> None:
    key = private_keys[name]
    signer = PrivateKeySigner(key)
    assert signer.public_key.algorithm == algorithm
    sig = signer.sign(DATA)
    pub = key.public_key()
    # check with cryptography directly, independent of PublicKey.verify
    if name.startswith("ecdsa"):
        digest = {
            "ecdsa-p256": hashes.SHA256(),
            "ecdsa-p384": hashes.SHA384(),
            "ecdsa-p521": hashes.SHA512(),
        }[name]
        pub.verify(sig, DATA, ec.ECDSA(digest))
    elif name == "ed25519":
        pub.verify(sig, DATA)
    else:
        pub.verify(sig, DATA, padding.PKCS1v15(), hashes.SHA256())


def test_rsa_pss_signatures_verify(private_keys: dict) -> None:
    key = private_keys["rsa-2048"]
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    sig = key.sign(DATA, pss, hashes.SHA256())
    assert PublicKey(key.public_key()).verify(sig, DATA)
    # SHA-1 PKCS#1 v1.5 is not accepted
    assert not PublicKey(key.public_key()).verify(key.sign(DATA, padding.PKCS1v15(), hashes.SHA1()), DATA)


def test_p256_signature_with_sha384_is_rejected(private_keys: dict) -> None:
    key = private_keys["ecdsa-p256"]
    assert not PublicKey(key.public_key()).verify(key.sign(DATA, ec.ECDSA(hashes.SHA384())), DATA)


UNSUPPORTED = [
    ("secp256k1", lambda: ec.generate_private_key(ec.SECP256K1()), "unsupported elliptic curve secp256k1"),
    ("ed448", ed448.Ed448PrivateKey.generate, "unsupported key type"),
    (
        "rsa-1024",
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
        "RSA key of 1024 bits",
    ),
]


@pytest.mark.parametrize(("name", "make", "message"), UNSUPPORTED)
def test_unsupported_keys_fail_closed_at_load(name: str, make, message: str) -> None:  # type: ignore[no-untyped-def]
    key = make()
    pub_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    priv_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyLoadError, match=message) as err:
        keys.load_public_key(pub_pem, source=f"{name}.pub")
    assert str(err.value).startswith(f"{name}.pub: ")
    with pytest.raises(KeyLoadError, match=message):
        keys.load_private_key(priv_pem, source=f"{name}.key")


BAD_PUBLIC = [
    (b"", "no PEM block found"),
    (b"hello", "no PEM block found"),
    (b"-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n", "unreadable PUBLIC KEY"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "unreadable CERTIFICATE"),
    (b"-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n", "PEM block 'FOO' is not a public key or certificate"),
    (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n" * 2, "holds 2 PEM blocks"),
]


@pytest.mark.parametrize(("data", "message"), BAD_PUBLIC)
def test_bad_public_key_files(data: bytes, message: str) -> None:
    with pytest.raises(KeyLoadError, match=message) as err:
        keys.load_public_key(data, source="k.pub")
    assert str(err.value).startswith("k.pub: ") and "\n" not in str(err.value)


def test_private_key_given_as_public_key_gets_a_helpful_message(p256_signer: PrivateKeySigner) -> None:
    pem = p256_signer.crypto_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyLoadError, match="holds a private key"):
        keys.load_public_key(pem, source="k.pub")
    with pytest.raises(KeyLoadError, match="not a private key"):
        keys.load_private_key(p256_signer.public_key.to_pem(), source="k.key")


def test_password_protected_pkcs8(p256_signer: PrivateKeySigner) -> None:
    from attestation.errors import WrongPasswordError

    pem = p256_signer.crypto_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    assert keys.is_encrypted_private_key(pem)
    assert keys.load_private_key(pem, source="k", password=b"secret").keyid == p256_signer.keyid
    with pytest.raises(WrongPasswordError, match="wrong password for k: decryption failed"):
        keys.load_private_key(pem, source="k", password=b"nope")
    with pytest.raises(KeyLoadError, match="encrypted and no password"):
        keys.load_private_key(pem, source="k")


def test_public_key_equality_and_hash_follow_the_key(
    p256_signer: PrivateKeySigner, other_p256_signer: PrivateKeySigner
) -> None:
    again = keys.load_public_key(p256_signer.public_key.to_pem(), source="elsewhere")
    assert again == p256_signer.public_key and hash(again) == hash(p256_signer.public_key)
    assert again != other_p256_signer.public_key
    assert isinstance(p256_signer, keys.Signer)


def test_too_many_pem_blocks_are_refused() -> None:
    data = b"-----BEGIN PUBLIC KEY-----\n" * 5_000
    with pytest.raises(KeyLoadError, match=r"k\.pub holds more than 64 PEM blocks"):
        keys.load_public_key(data, source="k.pub")
    assert not keys.is_encrypted_private_key(data)
