"""Atomic writes: whole files appear under their name, readable as a plain open() makes them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from glacierflow.processing.io.staging import staged


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_staged_file_appears_whole_with_the_mode_of_a_plain_file(tmp_path: Path) -> None:
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    target = tmp_path / "sub" / "mosaic.tif"
    with staged(target) as temporary:
        assert temporary.parent == target.parent and temporary.name.startswith(".mosaic.tif.")
        temporary.write_bytes(b"whole")
        assert not target.exists()
    assert target.read_bytes() == b"whole"
    assert _mode(target) == _mode(plain)  # others may read it when the umask lets them
    assert os.listdir(target.parent) == ["mosaic.tif"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "composite.nc"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), staged(target) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["composite.nc"]
