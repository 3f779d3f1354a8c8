"""What identifies the files a cell reads besides its dataset, so that a resume sees them change in place.

A file (a checkpoint, a config) counts by its content, as cell.json's
``checkpoint_sha256`` does; a folder (saved predictions) by the names, sizes
and modification times of the files under it, as datasets are fingerprinted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _part(path: Path) -> str:
    if path.is_file():
        return f"file {path}: {file_sha256(path)}"
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return f"folder {path}: " + " ".join(
            f"{p.relative_to(path).as_posix()}:{(stat := p.stat()).st_size}:{stat.st_mtime_ns}" for p in files)
    return f"absent {path}"


def paths_fingerprint(paths: Iterable[Path]) -> str | None:
    """sha256 over the paths' contents; None when there are none (cells reading no file keep old records)."""
    parts = [_part(Path(path)) for path in paths]
    if not parts:
        return None
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()
