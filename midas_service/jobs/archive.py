"""Reading a zip of photos as if it were hostile: nothing is extracted, every limit is checked.

Entries are read into memory one at a time straight from the archive, never written out under
their own names, so no name (``../x.png``, ``/etc/x``, ``C:\\x``) or link can place a file
anywhere. The whole archive is refused when it is not a zip, holds too many entries or
declares too many bytes; a single bad entry (unsafe name, link, special file, encrypted, too
large, larger than it claims, corrupt) is skipped and reported with its reason.
"""

from __future__ import annotations

import re
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

READ_CHUNK = 1024 * 1024
DRIVE = re.compile(r"^[A-Za-z]:")


class ArchiveRefused(ValueError):
    """The archive as a whole cannot be processed; the message says why."""


class Overflow(ValueError):
    """An entry expands past what may be read of it (its header understated its size)."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int
    max_total_bytes: int  # uncompressed, all entries together
    max_entry_bytes: int  # one photo: the /predict upload limit


@dataclass(frozen=True)
class Entry:
    """One file of the archive: its bytes, or why it was skipped (``data`` is then None)."""

    name: str  # the archive's name for it, as given (for the report)
    safe_name: str | None  # a relative path without '..', or None when the name is unsafe
    data: bytes | None = None
    problem: str | None = None


def safe_name(name: str) -> str | None:
    """``name`` as a harmless relative path, or None for absolute, parent or odd paths."""
    if not name or "\x00" in name or any(ord(c) < 32 for c in name):
        return None
    unified = name.replace("\\", "/")
    if unified.startswith("/") or DRIVE.match(unified):
        return None
    parts = [part for part in unified.split("/") if part not in ("", ".")]
    if not parts or any(part == ".." for part in parts):
        return None
    return str(PurePosixPath(*parts))


def file_type(info: zipfile.ZipInfo) -> int:
    """The Unix file type bits an archiver stored (0 when it stored none, e.g. on Windows)."""
    return stat.S_IFMT(info.external_attr >> 16)


def entry_problem(info: zipfile.ZipInfo, limits: ArchiveLimits) -> str | None:
    kind = file_type(info)
    if kind == stat.S_IFLNK:
        return "a symbolic link: not followed"
    if kind not in (0, stat.S_IFREG):
        return "not a regular file"
    if info.flag_bits & 0x1:
        return "encrypted: not supported"
    if info.file_size > limits.max_entry_bytes:
        return f"{info.file_size} bytes, over the {limits.max_entry_bytes} byte limit for one photo"
    return None


def list_entries(archive: zipfile.ZipFile, limits: ArchiveLimits) -> list[zipfile.ZipInfo]:
    """The file entries (directories left out), after the whole-archive limits."""
    infos = [info for info in archive.infolist() if not info.is_dir()]
    if len(infos) > limits.max_entries:
        raise ArchiveRefused(
            f"the archive holds {len(infos)} files, more than the limit of {limits.max_entries} "
            "(MIDAS_JOBS_MAX_ENTRIES)"
        )
    declared = sum(info.file_size for info in infos)
    if declared > limits.max_total_bytes:
        raise ArchiveRefused(
            f"the archive expands to {declared} bytes, more than the limit of "
            f"{limits.max_total_bytes} (MIDAS_JOBS_MAX_UNZIPPED_MB)"
        )
    return infos


def read_bounded(archive: zipfile.ZipFile, info: zipfile.ZipInfo, bound: int) -> bytes:
    """The entry's bytes; ValueError when it expands past ``bound`` (its header lied)."""
    chunks, size = [], 0
    with archive.open(info) as stream:
        while chunk := stream.read(min(READ_CHUNK, bound + 1 - size)):
            size += len(chunk)
            if size > bound:
                raise Overflow(f"expands past {bound} bytes, more than its header says")
            chunks.append(chunk)
    return b"".join(chunks)


def count_entries(path: Path, limits: ArchiveLimits) -> int:
    with open_zip(path) as archive:
        return len(list_entries(archive, limits))


def open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise ArchiveRefused(f"not a readable zip archive: {exc}") from exc


def read_entries(path: Path, limits: ArchiveLimits) -> Iterator[Entry]:
    """Every file entry of the zip at ``path``, in archive order, read within the limits."""
    with open_zip(path) as archive:
        infos = list_entries(archive, limits)
        budget = limits.max_total_bytes  # what is really read, whatever the headers claim
        for info in infos:
            safe = safe_name(info.filename)
            if safe is None:
                yield Entry(info.filename, None, problem="unsafe path: not read")
                continue
            problem = entry_problem(info, limits)
            if problem:
                yield Entry(info.filename, safe, problem=problem)
                continue
            bound = min(limits.max_entry_bytes, budget)
            try:
                data = read_bounded(archive, info, bound)
            except Overflow as exc:
                if bound < limits.max_entry_bytes:
                    raise ArchiveRefused(
                        "the archive expands past its total limit (MIDAS_JOBS_MAX_UNZIPPED_MB)"
                    ) from exc
                yield Entry(info.filename, safe, problem=str(exc))
                continue
            except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
                yield Entry(info.filename, safe, problem=f"corrupt entry: {exc}")
                continue
            budget -= len(data)
            yield Entry(info.filename, safe, data=data)
