"""Atomic writes and the private cache directory (attestation.files)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from attestation.errors import InputError
from attestation.files import cache_home, cache_put, private_cache_dir, write_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_atomic_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "notes.json"
    target.write_bytes(b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.json"]


def test_write_atomic_mode_follows_the_umask_unless_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "shared", b"x")
        write_atomic(tmp_path / "mine", b"x", private=True)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "shared") == 0o644
    assert _mode(tmp_path / "mine") == 0o600


def test_write_atomic_names_the_file_it_cannot_write(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "notes.json"
    with pytest.raises(InputError, match=r"cannot write .*missing-dir/notes\.json: No such file"):
        write_atomic(target, b"x")
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "notes.json").mkdir()  # a directory where the file should go: the rename fails
    with pytest.raises(InputError, match=r"notes\.json"):
        write_atomic(blocked / "notes.json", b"x")
    assert [p.name for p in blocked.iterdir()] == ["notes.json"]  # no temporary file left behind


def test_cache_put_ignores_what_it_cannot_write(tmp_path: Path) -> None:
    cache_put(tmp_path / "missing-dir" / "entry", b"x")  # no exception: the cache is only an optimisation
    cache_put(tmp_path / "entry", b"x")
    assert (tmp_path / "entry").read_bytes() == b"x" and _mode(tmp_path / "entry") == 0o600


def test_private_cache_dir_is_made_private_under_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_home() == tmp_path / "provgate"
    found = private_cache_dir("things")
    assert found == tmp_path / "provgate" / "things"
    assert _mode(found) == 0o700


def test_a_cache_directory_others_can_write_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    shared = tmp_path / "provgate" / "things"
    shared.mkdir(parents=True)
    for mode in (0o777, 0o722, 0o757):
        shared.chmod(mode)
        assert private_cache_dir("things") is None
    shared.chmod(0o755)
    assert private_cache_dir("things") == shared


def test_an_unusable_cache_home_gives_no_cache_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    assert private_cache_dir("things") is None
