"""Atomic file writes: build a file under a hidden temporary name, rename it when whole.

A reader (the tile server, a user's GDAL) therefore sees the old file or the new one,
never half of one, and an interrupted write leaves the old file in place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _process_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any threads.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_process_umask()


@contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` (its folder made if need be), renamed onto `path`
    when the block completes and removed when it fails or is interrupted.

    The file gets the mode a plain `open()` would give it: mkstemp's private 0600 would
    hide it from a server running as another user.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        os.chmod(temporary, _FILE_MODE)
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
