"""cosign encrypted keys, key files, passwords and key-pair generation (attestation.keys)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import nacl.secret
import pytest
from cryptography.hazmat.primitives import serialization

from attestation import cosign_key, keys
from attestation.errors import KeyLoadError, PasswordRequired, WrongPasswordError
from attestation.keys import PrivateKeySigner
from attestation.limits import MAX_KEY_FILE_BYTES

FAST_N = 1024  # tests only; cosign itself writes N=65536 (checked in test_generated_key_file_format)
DATA = b"payload"


def _pem_json(pem: bytes) -> dict:
    lines = pem.strip().splitlines()
    return json.loads(base64.b64decode(b"".join(lines[1:-1])))


def _pem_from_json(doc: dict, label: str = cosign_key.PEM_LABEL) -> bytes:
    b64 = base64.b64encode(json.dumps(doc).encode()).decode()
    body = "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode()


@pytest.fixture(scope="module")
def encrypted(private_keys: dict) -> tuple[PrivateKeySigner, bytes]:
    signer = PrivateKeySigner(private_keys["ecdsa-p256"])
    return signer, cosign_key.encrypt_private_key(signer.crypto_key, b"correct horse", scrypt_n=FAST_N)


def test_generated_key_file_format_decrypts_by_the_spec() -> None:
    """Decrypt a generated key by hand (scrypt + secretbox + PKCS#8), independently of the module."""
    private_pem, public_pem = keys.generate_cosign_key_pair(b"pw")
    assert private_pem.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    assert private_pem.endswith(b"-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    assert all(len(line) <= 64 for line in private_pem.splitlines())
    doc = _pem_json(private_pem)
    assert list(doc) == ["kdf", "cipher", "ciphertext"]
    assert doc["kdf"]["name"] == "scrypt" and doc["kdf"]["params"] == {"N": 65536, "r": 8, "p": 1}
    assert doc["cipher"]["name"] == "nacl/secretbox"
    salt, nonce = base64.b64decode(doc["kdf"]["salt"]), base64.b64decode(doc["cipher"]["nonce"])
    assert len(salt) == 32 and len(nonce) == 24
    key = hashlib.scrypt(b"pw", salt=salt, n=65536, r=8, p=1, dklen=32, maxmem=128 * 1024 * 1024)
    der = nacl.secret.SecretBox(key).decrypt(base64.b64decode(doc["ciphertext"]), nonce)
    private = serialization.load_der_private_key(der, password=None)
    assert (
        private.public_key().public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == public_pem
    )
    assert private.curve.name == "secp256r1"  # type: ignore[union-attr]
    # and the module reads it back to the same key
    signer = keys.load_private_key(private_pem, source="cosign.key", password=b"pw")
    assert signer.public_key == keys.load_public_key(public_pem, source="cosign.pub")


def test_each_generated_pair_is_new() -> None:
    assert keys.generate_cosign_key_pair(b"")[1] != keys.generate_cosign_key_pair(b"")[1]


def test_round_trip_for_every_key_type(signer: PrivateKeySigner) -> None:
    pem = cosign_key.encrypt_private_key(signer.crypto_key, b"secret", scrypt_n=FAST_N)
    loaded = keys.load_private_key(pem, source="k", password=b"secret")
    assert loaded.keyid == signer.keyid
    assert signer.public_key.verify(loaded.sign(DATA), DATA)


def test_empty_password_is_a_valid_password(p256_signer: PrivateKeySigner) -> None:
    pem = cosign_key.encrypt_private_key(p256_signer.crypto_key, b"", scrypt_n=FAST_N)
    assert keys.load_private_key(pem, source="k", password=b"").keyid == p256_signer.keyid
    with pytest.raises(WrongPasswordError):
        keys.load_private_key(pem, source="k", password=b" ")


def test_wrong_password(encrypted: tuple[PrivateKeySigner, bytes]) -> None:
    _, pem = encrypted
    with pytest.raises(WrongPasswordError) as err:
        keys.load_private_key(pem, source="ci/cosign.key", password=b"correct horse!")
    assert str(err.value) == "wrong password for ci/cosign.key: decryption failed"


def test_no_password_for_encrypted_key(encrypted: tuple[PrivateKeySigner, bytes]) -> None:
    with pytest.raises(KeyLoadError, match="k: the cosign key is encrypted and no password was given"):
        keys.load_private_key(encrypted[1], source="k")


def test_legacy_cosign_label_is_accepted(encrypted: tuple[PrivateKeySigner, bytes]) -> None:
    signer, pem = encrypted
    legacy = pem.replace(b"ENCRYPTED SIGSTORE PRIVATE KEY", b"ENCRYPTED COSIGN PRIVATE KEY")
    assert keys.load_private_key(legacy, source="k", password=b"correct horse").keyid == signer.keyid


def test_tampered_ciphertext_fails_as_decryption_failure(encrypted: tuple[PrivateKeySigner, bytes]) -> None:
    doc = _pem_json(encrypted[1])
    ct = bytearray(base64.b64decode(doc["ciphertext"]))
    ct[-1] ^= 1
    doc["ciphertext"] = base64.b64encode(bytes(ct)).decode()
    with pytest.raises(WrongPasswordError, match="decryption failed"):
        keys.load_private_key(_pem_from_json(doc), source="k", password=b"correct horse")


def _mutated(pem: bytes, path: tuple[str, ...], value: object) -> dict:
    doc = _pem_json(pem)
    node = doc
    for part in path[:-1]:
        node = node[part]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


BAD_DOCS = [
    (("kdf", "name"), "argon2", "unsupported kdf 'argon2'"),
    (("cipher", "name"), "aes-gcm", "unsupported cipher 'aes-gcm'"),
    (("kdf", "params", "N"), 2**30, "unsupported scrypt parameters N=1073741824"),
    (("kdf", "params", "N"), 1000, "unsupported scrypt parameters N=1000"),
    (("kdf", "params", "r"), 4096, "unsupported scrypt parameters"),
    (("kdf", "params", "p"), 0, "kdf.params.p is not a positive integer"),
    (("kdf", "params", "N"), "65536", "kdf.params.N is not a positive integer"),
    (("kdf", "params", "N"), True, "kdf.params.N is not a positive integer"),
    (("kdf", "params"), ..., "has no field kdf.params"),
    (("kdf", "salt"), "***", "kdf.salt is not valid base64"),
    (("kdf", "salt"), 5, "kdf.salt is missing or not a string"),
    (("cipher", "nonce"), "AAAA", "nonce must be 24 bytes"),
    (("ciphertext",), ..., "has no field ciphertext"),
    (("kdf",), "scrypt", "has no field kdf.name"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD_DOCS)
def test_malformed_cosign_keys_are_rejected_without_decrypting(
    encrypted: tuple[PrivateKeySigner, bytes], path: tuple[str, ...], value: object, message: str
) -> None:
    pem = _pem_from_json(_mutated(encrypted[1], path, value))
    with pytest.raises(KeyLoadError, match=message) as err:
        keys.load_private_key(pem, source="k.key", password=b"correct horse")
    assert not isinstance(err.value, WrongPasswordError)
    assert str(err.value).startswith("k.key")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not base64 at all!", "PEM body is not valid base64"),
        (base64.b64encode(b"not json"), "is not valid JSON"),
        (base64.b64encode(b"[]"), "has no field kdf"),
    ],
)
def test_unreadable_cosign_key_bodies(body: bytes, message: str) -> None:
    pem = (
        b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
        + body
        + b"\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    )
    with pytest.raises(KeyLoadError, match=message):
        keys.load_private_key(pem, source="k.key", password=b"x")


def test_decrypted_plaintext_that_is_not_a_key_is_a_load_error(
    encrypted: tuple[PrivateKeySigner, bytes],
) -> None:
    doc = _pem_json(encrypted[1])
    salt, nonce = base64.b64decode(doc["kdf"]["salt"]), base64.b64decode(doc["cipher"]["nonce"])
    key = hashlib.scrypt(b"pw", salt=salt, n=FAST_N, r=8, p=1, dklen=32)
    doc["ciphertext"] = base64.b64encode(
        nacl.secret.SecretBox(key).encrypt(b"garbage", nonce).ciphertext
    ).decode()
    with pytest.raises(KeyLoadError, match="decrypted cosign key is not a PKCS#8 private key"):
        keys.load_private_key(_pem_from_json(doc), source="k", password=b"pw")


# --- files and passwords ---------------------------------------------------------------------------------


@pytest.fixture
def key_file(
    tmp_path: Path, encrypted: tuple[PrivateKeySigner, bytes], monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    path = tmp_path / "cosign.key"
    path.write_bytes(encrypted[1])
    return path


def test_password_from_cosign_password_env(
    key_file: Path, monkeypatch: pytest.MonkeyPatch, encrypted
) -> None:
    monkeypatch.setenv("COSIGN_PASSWORD", "correct horse")
    assert keys.load_private_key_file(key_file).keyid == encrypted[0].keyid
    monkeypatch.setenv("COSIGN_PASSWORD", "")  # set but empty means the empty password, no prompt
    with pytest.raises(WrongPasswordError, match=f"wrong password for {key_file}"):
        keys.load_private_key_file(key_file)


def test_password_from_file_strips_one_trailing_newline(key_file: Path, tmp_path: Path, encrypted) -> None:
    pw = tmp_path / "pw"
    for content in (b"correct horse\n", b"correct horse\r\n", b"correct horse"):
        pw.write_bytes(content)
        assert keys.load_private_key_file(key_file, password_file=pw).keyid == encrypted[0].keyid
    pw.write_bytes(b"correct horse\n\n")  # only one newline is stripped
    with pytest.raises(WrongPasswordError):
        keys.load_private_key_file(key_file, password_file=pw)


def test_explicit_password_file_wins_over_env(
    key_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encrypted
) -> None:
    monkeypatch.setenv("COSIGN_PASSWORD", "stale")
    pw = tmp_path / "pw"
    pw.write_bytes(b"correct horse\n")
    assert keys.load_private_key_file(key_file, password_file=pw).keyid == encrypted[0].keyid


def test_missing_password_file_is_named(key_file: Path, tmp_path: Path) -> None:
    with pytest.raises(KeyLoadError, match=f"cannot read password file {tmp_path / 'nope'}: No such file"):
        keys.load_private_key_file(key_file, password_file=tmp_path / "nope")


class _FakeTTY:
    def isatty(self) -> bool:
        return True


def test_prompt_only_on_a_terminal_and_only_when_allowed(
    key_file: Path, monkeypatch: pytest.MonkeyPatch, encrypted
) -> None:
    asked: list[str] = []

    def fake_getpass(prompt: str) -> str:
        asked.append(prompt)
        return "correct horse"

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    # not a terminal (pytest captures stdin): no prompt, a message saying how to give the password; a
    # library names no command-line option (the signer CLI adds its own, test_cli_password_hint.py)
    with pytest.raises(PasswordRequired) as err:
        keys.load_private_key_file(key_file)
    assert str(err.value) == f"{key_file} is encrypted: set COSIGN_PASSWORD (no terminal to prompt on)"
    assert "--" not in str(err.value)
    monkeypatch.setattr("sys.stdin", _FakeTTY())
    with pytest.raises(KeyLoadError, match="set COSIGN_PASSWORD"):
        keys.load_private_key_file(key_file, prompt=False)
    assert asked == []
    assert keys.load_private_key_file(key_file).keyid == encrypted[0].keyid
    assert asked == [f"Enter password for private key {key_file}: "]


def test_unencrypted_key_file_never_asks_for_a_password(
    tmp_path: Path, p256_signer: PrivateKeySigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    path = tmp_path / "x509.pem"
    path.write_bytes(
        p256_signer.crypto_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    assert keys.load_private_key_file(path, prompt=False).keyid == p256_signer.keyid


def test_key_file_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyLoadError, match=f"cannot read key file {tmp_path / 'missing.key'}: No such file"):
        keys.load_private_key_file(tmp_path / "missing.key")
    with pytest.raises(KeyLoadError, match=r"cannot read key file .*: Is a directory"):
        keys.load_public_key_file(tmp_path)
    big = tmp_path / "big.pub"
    big.write_bytes(b"A" * (MAX_KEY_FILE_BYTES + 1))
    with pytest.raises(KeyLoadError, match=f"key file {big} is larger than {MAX_KEY_FILE_BYTES} bytes"):
        keys.load_public_key_file(big)


def test_load_public_key_file(tmp_path: Path, p256_signer: PrivateKeySigner) -> None:
    path = tmp_path / "cosign.pub"
    path.write_bytes(p256_signer.public_key.to_pem())
    loaded = keys.load_public_key_file(path)
    assert loaded == p256_signer.public_key and loaded.source == str(path)


# --- write_key_pair --------------------------------------------------------------------------------------


def test_write_key_pair(tmp_path: Path) -> None:
    key_path, pub_path = keys.write_key_pair(str(tmp_path / "cosign"), b"pw")
    assert (key_path, pub_path) == (tmp_path / "cosign.key", tmp_path / "cosign.pub")
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    signer = keys.load_private_key(key_path.read_bytes(), source="k", password=b"pw")
    assert keys.load_public_key_file(pub_path) == signer.public_key


def test_write_key_pair_refuses_to_overwrite(tmp_path: Path) -> None:
    prefix = str(tmp_path / "cosign")
    (tmp_path / "cosign.pub").write_bytes(b"keep me")
    with pytest.raises(KeyLoadError, match=r"cosign\.pub already exists; refusing to overwrite it"):
        keys.write_key_pair(prefix, b"pw")
    assert (tmp_path / "cosign.pub").read_bytes() == b"keep me"
    assert not (tmp_path / "cosign.key").exists()
    key_path, pub_path = keys.write_key_pair(prefix, b"pw", overwrite=True)
    assert pub_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600


def test_write_key_pair_into_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(KeyLoadError, match=r"cannot write key pair .*No such file or directory"):
        keys.write_key_pair(str(tmp_path / "no" / "such" / "dir"), b"pw")
