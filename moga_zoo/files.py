"""Files a user keeps appear complete or not at all: written under a temporary name beside the
target, renamed when done, with ordinary permissions."""
from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(final: str | Path):
    """Yield a temporary path beside ``final``; it becomes ``final`` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    # the name is fixed before the file exists, so a Ctrl-C landing while it is being created
    # (mkstemp would not have returned its name yet) still finds it to delete
    tmp = final.parent / f".{final.name}.{secrets.token_hex(6)}.part"
    ours = True
    try:
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:  # another writer's temporary (a 1-in-2**48 draw): not ours to delete
            ours = False
            raise
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # the temporary is private until it is complete
        os.replace(tmp, final)
    finally:
        if ours:
            tmp.unlink(missing_ok=True)


def remove_stale_parts(folder: str | Path) -> list[str]:
    """Delete the temporaries a killed writer left in ``folder`` (``kill -9`` skips every cleanup);
    call it only when no other writer can be using the folder. Returns the names removed."""
    removed = []
    for p in Path(folder).glob(".*.part"):
        p.unlink(missing_ok=True)
        removed.append(p.name)
    return removed


def write_text_atomic(path: str | Path, text: str):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
