"""Files cifarzoo writes and reads: one home for `$CIFARZOO_HOME`, atomic writes, sha256 and stale leftovers.

Every file cifarzoo writes (records, weights, sidecars, checkpoints, caches, pages) goes through
`write_atomic`: a temporary file beside the target, flushed and fsynced, then renamed over it, so readers
see the old file or the new one and never half of one. The temporary file is removed on every failure
(a full disk included); one left behind by a killed process is named `.<name>.tmp-<pid>-<random>` and
`clean_stale` removes it when the folder is next used.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from zoo.errors import CifarzooError

DEFAULT_HOME = Path("~/.cache/cifarzoo")
TMP_MARK = ".tmp-"  # in the name of every temporary file of write_atomic
STALE_AFTER_S = 3600.0  # a temporary file or build folder this old belongs to no live process


def home() -> Path:
    """$CIFARZOO_HOME, or ~/.cache/cifarzoo."""
    return Path(os.environ.get("CIFARZOO_HOME") or DEFAULT_HOME).expanduser()


def home_dir(name: str) -> Path:
    """A folder of the home: weights, datasets, cifar10, machine, promoted, entries."""
    return home() / name


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: str | os.PathLike, data: bytes | str | Callable[[IO[bytes]], Any], *,
                 overwrite: bool = True, fsync: bool = True) -> Path:
    """Write `data` (bytes, text, or a function writing into a binary file) to `path` atomically.

    With `overwrite=False` an existing file is never replaced, even one that appears while writing
    (hard link instead of rename). A failure removes the temporary file and, for a full disk or a
    read-only folder, becomes a CifarzooError naming `path`.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TMP_MARK}{os.getpid()}-")
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        _publish(tmp, path, overwrite)
    except OSError as err:
        user = _user_error(err, path)
        if user is None:
            raise
        raise user from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _publish(tmp: str, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if `path` exists, even one created a moment ago by another process
    except FileExistsError:
        raise CifarzooError(f"{path} already exists and is never overwritten; pass --force to replace it.") from None
    except OSError:  # file systems without hard links
        if path.exists():
            raise CifarzooError(f"{path} already exists and is never overwritten; pass --force to replace it.") \
                from None
        os.replace(tmp, path)


def _user_error(err: OSError, path: Path) -> CifarzooError | None:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return CifarzooError(f"the disk is full while writing {path}; the partial file was removed and what "
                             "was there before is unchanged: free some space and run again.")
    if err.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return CifarzooError(f"cannot write {path} (read-only or permission denied); choose another folder.")
    return None


def clean_stale(folder: str | os.PathLike, *, older_than_s: float = STALE_AFTER_S,
                patterns: tuple[str, ...] = (f".*{TMP_MARK}*",)) -> list[Path]:
    """Remove leftovers of killed processes in `folder` (temporary files, by default) older than
    `older_than_s`; returns what was removed. Young ones may belong to a process still writing."""
    import shutil

    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    cutoff = time.time() - older_than_s
    for pattern in patterns:
        for leftover in folder.glob(pattern):
            try:
                if leftover.lstat().st_mtime > cutoff:
                    continue
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover)
                else:
                    leftover.unlink()
                removed.append(leftover)
            except OSError:
                continue  # another process took it first
    return removed
