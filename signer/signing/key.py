"""Signing with a key file (cosign-format encrypted key or PEM), producing a DSSE envelope."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from attestation import dsse, intoto, keys
from signer.signing import Sign
from signer.storage import SignedProvenance


def load_signer(
    key_path: str | os.PathLike[str],
    *,
    password_file: str | os.PathLike[str] | None = None,
    prompt: bool = True,
) -> keys.PrivateKeySigner:
    """KeyLoadError / WrongPasswordError (one line naming the file) when the key is unusable."""
    return keys.load_private_key_file(key_path, password_file=password_file, prompt=prompt)


def sign_statement(statement: Mapping[str, Any], signer: keys.Signer) -> dsse.Envelope:
    """DSSE envelope over the statement serialised as Chains does (in-toto payload type)."""
    return dsse.sign(intoto.serialize(statement), signer)


@dataclass(frozen=True)
class KeySigning:
    """The key backend: a private key loaded once (Chains' ``cosign.key`` signing secret, or ``--key``)."""

    signer: keys.PrivateKeySigner
    source: str = "private key"

    @classmethod
    def load(
        cls,
        key_path: str | os.PathLike[str],
        *,
        password_file: str | os.PathLike[str] | None = None,
        prompt: bool = True,
    ) -> KeySigning:
        """:func:`load_signer`, as a backend."""
        return cls(load_signer(key_path, password_file=password_file, prompt=prompt), source=str(key_path))

    @property
    def label(self) -> str:
        return f"key {self.source} ({self.signer.keyid})"

    def ready(self) -> Sign:
        return self.sign

    def sign(self, statement: Mapping[str, Any]) -> SignedProvenance:
        return SignedProvenance(statement, sign_statement(statement, self.signer), self.signer.public_key)
