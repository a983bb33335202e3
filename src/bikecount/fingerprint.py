"""Short content fingerprints, to tell which data a run was trained on."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_fingerprint(path: Path, chunk_size: int = 1 << 20) -> str:
    """The first 16 hex digits of the file's SHA-256."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()[:16]
