"""Signing with a key file (cosign-format encrypted key or PEM), producing a DSSE envelope."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from attestation import dsse, intoto, keys


def load_signer(key_path: str | os.PathLike[str], *, password_file: str | os.PathLike[str] | None = None,
                prompt: bool = True) -> keys.PrivateKeySigner:
    """KeyLoadError / WrongPasswordError (one line naming the file) when the key is unusable."""
    return keys.load_private_key_file(key_path, password_file=password_file, prompt=prompt)


def sign_statement(statement: Mapping[str, Any], signer: keys.Signer) -> dsse.Envelope:
    """DSSE envelope over the statement serialised as Chains does (in-toto payload type)."""
    return dsse.sign(intoto.serialize(statement), signer)
