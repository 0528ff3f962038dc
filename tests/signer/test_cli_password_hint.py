"""An encrypted key and no password: the library says what it needs without naming an option (it has
none), and the signer CLI adds its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from attestation import keys
from tests.signer.test_cli import PIPELINERUN, assert_error, signer  # noqa: F401


def test_sign_without_a_password_names_the_signer_s_own_option(signer, tmp_path: Path) -> None:  # noqa: F811
    key, _ = keys.write_key_pair(str(tmp_path / "cosign"), b"s3cret")
    out = tmp_path / "env.json"
    proc = signer("sign", str(PIPELINERUN), "--key", str(key), "--out", str(out))
    assert_error(proc, f"{key} is encrypted: set COSIGN_PASSWORD", "or pass --key-password-file FILE")
    assert "--password-file " not in proc.stderr  # no such option
    assert not out.exists()


@pytest.mark.parametrize("password", ["", "s3cret"])
def test_the_hint_is_only_for_a_missing_password(signer, tmp_path: Path, password: str) -> None:  # noqa: F811
    key, _ = keys.write_key_pair(str(tmp_path / "cosign"), b"other")
    proc = signer("sign", str(PIPELINERUN), "--key", str(key), env={"COSIGN_PASSWORD": password})
    assert_error(proc, "wrong password")
    assert "--key-password-file" not in proc.stderr
