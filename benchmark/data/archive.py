"""Read-only views of an image-folder tree kept as a folder, a .zip or a .tar(.gz), read in place.

Each view lists its files and (explicit) folders as POSIX paths relative to its root, and reads the
bytes of the files asked for. Nothing is extracted to disk.
"""

from __future__ import annotations

import mmap
import os
import tarfile
import zipfile
import zlib
from pathlib import Path

from zoo.errors import CifarzooError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def ignored(name: str) -> bool:
    """Hidden files and macOS metadata are not part of the dataset."""
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))


class FolderTree:
    """An image-folder tree on disk."""

    def __init__(self, root: Path):
        self.root = root

    def where(self, name: str) -> str:
        return str(self.root / name)

    def listing(self) -> tuple[list[str], set[str]]:
        """Files and folders, following symbolic links to folders (a class folder may be a link to where the
        images really are); a link that leads back up the tree is an error, not an endless walk."""
        files, dirs, seen = [], set(), set()
        for here, subdirs, names in os.walk(self.root, followlinks=True):
            real = os.path.realpath(here)
            if real in seen:
                raise CifarzooError(f"{here} links back to a folder already read; remove the symbolic link loop.")
            seen.add(real)
            rel = Path(here).relative_to(self.root).as_posix()
            prefix = "" if rel == "." else rel + "/"
            dirs.update(prefix + d for d in subdirs)
            files.extend(prefix + n for n in names)
        return [f for f in files if not ignored(f)], {d for d in dirs if not ignored(d)}

    def read(self, names: list[str]) -> list[bytes]:
        return [(self.root / name).read_bytes() for name in names]


class ZipTree:
    """A zip archive; stored (uncompressed) members are sliced straight out of a memory map."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as err:
            raise CifarzooError(f"{path} is not a readable zip archive ({err}); check the file.") from None
        self.infos = {i.filename: i for i in self.zip.infolist()}

    def where(self, name: str) -> str:
        return f"'{name}' in {self.path}"

    def listing(self) -> tuple[list[str], set[str]]:
        files = [n for n, i in self.infos.items() if not i.is_dir() and not ignored(n)]
        dirs = {n.rstrip("/") for n, i in self.infos.items() if i.is_dir() and not ignored(n)}
        return files, dirs

    def read(self, names: list[str]) -> list[bytes]:
        with open(self.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return [self._read_one(mm, self.infos[name]) for name in names]

    def _read_one(self, mm: mmap.mmap, info: zipfile.ZipInfo) -> bytes:
        start = info.header_offset
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1 or mm[start : start + 4] != b"PK\3\4":
            return self.zip.read(info)  # compressed or encrypted: the slow, general path
        name_len = int.from_bytes(mm[start + 26 : start + 28], "little")
        extra_len = int.from_bytes(mm[start + 28 : start + 30], "little")
        begin = start + 30 + name_len + extra_len
        blob = mm[begin : begin + info.compress_size]
        if zlib.crc32(blob) != info.CRC:
            raise CifarzooError(f"{self.where(info.filename)} is corrupt (CRC mismatch); re-download the archive.")
        return blob


class TarTree:
    """A tar archive (optionally gz/bz2/xz); read in one sequential pass, since compressed tars cannot seek."""

    def __init__(self, path: Path):
        self.path = path
        self.blobs: dict[str, bytes] = {}
        self.dirs: set[str] = set()
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:
                    name = member.name.removeprefix("./").rstrip("/")
                    if not name or name == "." or ignored(name):
                        continue
                    if member.isdir():
                        self.dirs.add(name)
                    elif member.isfile():
                        self.blobs[name] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
            raise CifarzooError(f"{path} is not a readable tar archive ({err}); check the file.") from None

    def where(self, name: str) -> str:
        return f"'{name}' in {self.path}"

    def listing(self) -> tuple[list[str], set[str]]:
        return list(self.blobs), set(self.dirs)

    def read(self, names: list[str]) -> list[bytes]:
        return [self.blobs[name] for name in names]


def open_tree(path: Path) -> FolderTree | ZipTree | TarTree:
    """The right view for `path`: a folder, a zip, or a tar; anything else is a user error."""
    if path.is_dir():
        return FolderTree(path)
    name = path.name.lower()
    if name.endswith(".zip"):
        return ZipTree(path)
    if name.endswith(ARCHIVE_SUFFIXES):
        return TarTree(path)
    if zipfile.is_zipfile(path):
        return ZipTree(path)
    if tarfile.is_tarfile(path):
        return TarTree(path)
    raise CifarzooError(
        f"{path} is neither a folder nor a .zip / .tar / .tar.gz archive; "
        "pass an image-folder tree with train/<class>/ and test/<class>/ folders."
    )
