"""Files cifarzoo writes and reads: one home for `$CIFARZOO_HOME`, atomic writes, sha256 and stale leftovers.

Every file cifarzoo writes (records, weights, sidecars, checkpoints, caches, pages) goes through
`write_atomic`: a temporary file beside the target, flushed and fsynced, then renamed over it, so readers
see the old file or the new one and never half of one, with the mode a plain `open()` would give it (the
umask's, `new_file_mode`). The temporary file is removed on every failure
(a full disk included); one left behind by a killed process is named `.<name>.tmp-<pid>-<random>` and
`clean_stale` removes it when the folder is next used.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from zoo.errors import CifarzooError

DEFAULT_HOME = Path("~/.cache/cifarzoo")
TMP_MARK = ".tmp-"  # in the name of every temporary file of write_atomic
STALE_AFTER_S = 60.0  # a leftover of a dead pid younger than this may be another host's write in progress


def home() -> Path:
    """$CIFARZOO_HOME, or ~/.cache/cifarzoo."""
    return Path(os.environ.get("CIFARZOO_HOME") or DEFAULT_HOME).expanduser()


def home_dir(name: str) -> Path:
    """A folder of the home: weights, datasets, cifar10, machine, promoted, entries."""
    return home() / name


def inside(root: str | os.PathLike, relative: str | os.PathLike) -> Path:
    """`root / relative`, proven to stay inside `root`: paths built from record fields are never trusted."""
    root = Path(root).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"refusing the path {relative!s}: it leads outside {root}")
    return path


_FOLDERS = re.compile(r"(?<![\w.<:/])/(?:[^\s,/'\"<>]+/)+([^\s,/'\"<>]+)")  # not "</a>" in a page


def without_folders(text: str) -> str:
    """`text` with every absolute path cut to its last name ("/home/me/data/x.zip" -> "x.zip"): records,
    pages and the committed site name files, never the folders of the machine that wrote them."""
    return _FOLDERS.sub(r"\1", text)


_DATA_ARG = re.compile(r"(--data[= ])(?:[^\s/<]*/)+([^\s/<]+)")


def portable_command(command: str) -> str:
    """A stored command line: absolute paths cut to their names, and `--data` named by its file, relative
    or not (the record's data section says which copy it was, by description and fingerprint)."""
    return _DATA_ARG.sub(r"\1\2", without_folders(command))


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
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        _publish(tmp, path, overwrite)
    except (OSError, RuntimeError) as err:  # torch.save wraps the disk's OSError in a RuntimeError
        user = _user_error(err, path)
        if user is None:
            raise
        raise user from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def new_file_mode() -> int:
    """The mode `open()` gives a new file, 0o666 less the umask. mkstemp makes its files private (0o600), and
    the rename would keep that: records, published weights and ONNX files unreadable to the other users of a
    shared results folder or of a package installed by root."""
    try:  # Linux shows the umask without changing it; os.umask can only read it by setting it
        status = Path("/proc/self/status").read_text()
        mask = int(re.search(r"^Umask:\s*([0-7]+)", status, re.M).group(1), 8)  # type: ignore[union-attr]
    except (OSError, AttributeError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


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


def _user_error(err: BaseException, path: Path) -> CifarzooError | None:
    for _ in range(5):  # the OSError may sit under a library's own error
        if isinstance(err, OSError) or (err.__cause__ or err.__context__) is None:
            break
        err = err.__cause__ or err.__context__
    if not isinstance(err, OSError):
        return None
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return CifarzooError(f"the disk is full while writing {path}; the partial file was removed and what "
                             "was there before is unchanged: free some space and run again.")
    if err.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return CifarzooError(f"cannot write {path} (read-only or permission denied); choose another folder.")
    return None


LEFTOVER_RE = re.compile(r"\.(?:tmp|building|old)-(\d+)")  # temp files, site builds, swapped-out sites


def clean_stale(folder: str | os.PathLike, *, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove what killed processes left in `folder`: temporary files (`.<name>.tmp-<pid>-*`) and site build
    folders (`.<site>.building-<pid>`, `.<site>.old-<pid>`) whose process is gone and that are older than
    `older_than_s` (a folder shared between hosts may hold another host's write in progress). Returns what
    was removed."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for leftover in folder.glob(".*"):
        match = LEFTOVER_RE.search(leftover.name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            young = leftover.lstat().st_mtime > time.time() - older_than_s  # may be another host's, writing now
            if pid == os.getpid() or _alive(pid) or young:
                continue
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
            removed.append(leftover)
        except OSError:
            continue  # another process took it first
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def replace_dir(new: str | os.PathLike, out: str | os.PathLike) -> None:
    """Put folder `new` at `out` so that at every instant `out` holds the old folder or the new one: one
    atomic exchange (Linux renameat2 RENAME_EXCHANGE), then the old folder, now at `new`, is removed."""
    new, out = Path(new), Path(out)
    if not out.exists():
        os.replace(new, out)
        return
    if _exchange(new, out):
        shutil.rmtree(new, ignore_errors=True)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"  # no atomic exchange here: a brief gap, cleaned later
    os.replace(out, old)
    os.replace(new, out)
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux >= 3.15, glibc >= 2.28); False where the system cannot."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))
