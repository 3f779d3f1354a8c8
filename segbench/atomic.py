"""Files that appear whole or not at all, with the permissions a plain write would give them.

Writes go to a temporary name beside the target, then a rename. ``mkstemp``
and ``mkdtemp`` make their files 0600 and folders 0700, which would hide a
run folder from the rest of a team: they get the umask's usual modes instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from segbench.errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()


def usual_mode(path: Path) -> None:
    """The mode ``open`` or ``mkdir`` would have given ``path``."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename over it.

    A failing write (a full disk, a read-only folder) leaves the old file as it
    was and is a UserError naming the file and the reason.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        usual_mode(Path(tmp))
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise UserError(f"cannot write: {error.strerror or error}", source=str(path)) from None
        raise


def temporary_folder(parent: Path | None, prefix: str) -> Path:
    """A new folder ``<parent>/<prefix><random>.tmp`` (the system's temporary folder when None)."""
    folder = Path(tempfile.mkdtemp(dir=parent, prefix=prefix, suffix=".tmp"))
    usual_mode(folder)
    return folder
