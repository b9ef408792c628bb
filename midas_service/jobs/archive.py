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
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

READ_CHUNK = 1024 * 1024
DRIVE = re.compile(r"^[A-Za-z]:")
# The zip format's fixed records (APPNOTE 4.3.12, 4.3.14-16): signature, then the fields used.
END_RECORD = struct.Struct("<4s4H2LH")  # end of central directory: 22 bytes + comment
END_RECORD_64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory: 56 bytes
LOCATOR_64 = struct.Struct("<4sLQL")  # zip64 end of central directory locator: 20 bytes
CENTRAL_HEADER = struct.Struct("<4s4B4HL2L5H2L")  # one central directory entry: 46 bytes + names
MAX_COMMENT = 0xFFFF


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


@dataclass(frozen=True)
class CentralDirectory:
    """What the central directory holds, counted without building an object per entry."""

    entries: int  # every record, folders included (at most the limit + 1: counting stops)
    files: int  # records whose name does not end in "/"


def central_directory(stream: IO[bytes], limit: int) -> CentralDirectory:
    """Count the central directory's records from the end record on, before any is parsed.

    The end record's entry count is checked first; then the records are walked (46 bytes and
    their name each, nothing kept) up to ``limit`` + 1, since zipfile reads every record the
    directory's size covers, whatever the count says. ArchiveRefused past ``limit``, or when
    the end records cannot be found.
    """
    start, size, declared = _directory_bounds(stream)
    if declared > limit:
        raise ArchiveRefused(_too_many(declared, limit))
    stream.seek(start)
    entries = files = read = 0
    while read + CENTRAL_HEADER.size <= size:
        header = stream.read(CENTRAL_HEADER.size)
        fields = CENTRAL_HEADER.unpack(header) if len(header) == CENTRAL_HEADER.size else None
        if fields is None or fields[0] != b"PK\x01\x02":  # as zipfile would refuse it
            raise ArchiveRefused("not a readable zip archive: bad central directory record")
        name_length, extra_length, comment_length = fields[12], fields[13], fields[14]
        name = stream.read(name_length)
        stream.seek(extra_length + comment_length, 1)
        read += CENTRAL_HEADER.size + name_length + extra_length + comment_length
        entries += 1
        files += not name.endswith(b"/")
        if entries > limit:
            raise ArchiveRefused(_too_many(f"more than {limit}", limit))
    return CentralDirectory(entries, files)


def _too_many(count: object, limit: int) -> str:
    return (
        f"the archive holds {count} entries (files and folders), more than the limit of "
        f"{limit} (MIDAS_JOBS_MAX_ENTRIES)"
    )


def _directory_bounds(stream: IO[bytes]) -> tuple[int, int, int]:
    """(start, size, declared entries) of the central directory, zip64 included."""
    end = stream.seek(0, 2)
    tail_start = max(0, end - END_RECORD.size - MAX_COMMENT)
    stream.seek(tail_start)
    tail = stream.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < END_RECORD.size:
        raise ArchiveRefused("not a readable zip archive: no end of central directory record")
    record = END_RECORD.unpack_from(tail, at)
    location = tail_start + at
    declared, size, offset = record[4], record[5], record[6]
    if declared == 0xFFFF or 0xFFFFFFFF in (size, offset):
        locator_at = location - LOCATOR_64.size
        stream.seek(max(0, locator_at))
        locator = stream.read(LOCATOR_64.size)
        if locator_at >= 0 and locator.startswith(b"PK\x06\x07"):
            location = locator_at - END_RECORD_64.size  # where zipfile looks for it
            stream.seek(max(0, location))
            raw = stream.read(END_RECORD_64.size)
            if location < 0 or len(raw) < END_RECORD_64.size or not raw.startswith(b"PK\x06\x06"):
                raise ArchiveRefused("not a readable zip archive: broken zip64 end record")
            record64 = END_RECORD_64.unpack(raw)
            declared, size = record64[7], record64[8]
    # As zipfile does: the directory ends where the end record starts (data may precede it).
    return max(0, location - size), size, declared


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
    with open_zip(path, limits) as archive:
        return len(list_entries(archive, limits))


def open_stream(stream: IO[bytes], limits: ArchiveLimits) -> zipfile.ZipFile:
    """The zip in ``stream``, opened once its central directory is known to be within the
    entry limit and to hold at least one file."""
    if central_directory(stream, limits.max_entries).files == 0:
        raise ArchiveRefused("the archive holds no files (only folders, or nothing)")
    stream.seek(0)
    try:
        return zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise ArchiveRefused(f"not a readable zip archive: {exc}") from exc


@contextmanager
def open_zip(path: Path, limits: ArchiveLimits) -> Iterator[zipfile.ZipFile]:
    try:
        stream = path.open("rb")  # closed by the with below
    except OSError as exc:
        raise ArchiveRefused(f"not a readable zip archive: {exc}") from exc
    with stream, open_stream(stream, limits) as archive:
        yield archive


def read_entries(path: Path, limits: ArchiveLimits) -> Iterator[Entry]:
    """Every file entry of the zip at ``path``, in archive order, read within the limits."""
    with open_zip(path, limits) as archive:
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
