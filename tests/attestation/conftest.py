"""Keys of every supported type, generated once per test session (RSA generation is the slow part)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from attestation.keys import PrivateKeySigner

KEY_FACTORIES = {
    "ecdsa-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ecdsa-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ecdsa-p521": lambda: ec.generate_private_key(ec.SECP521R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "rsa-2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}


@pytest.fixture(scope="session")
def private_keys() -> dict[str, object]:
    return {name: make() for name, make in KEY_FACTORIES.items()}


@pytest.fixture(scope="session", params=sorted(KEY_FACTORIES))
def signer(request: pytest.FixtureRequest, private_keys: dict[str, object]) -> PrivateKeySigner:
    return PrivateKeySigner(private_keys[request.param], source=request.param)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def p256_signer(private_keys: dict[str, object]) -> PrivateKeySigner:
    return PrivateKeySigner(private_keys["ecdsa-p256"], source="p256")  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def other_p256_signer() -> PrivateKeySigner:
    return PrivateKeySigner(ec.generate_private_key(ec.SECP256R1()), source="other-p256")
