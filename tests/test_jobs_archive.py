"""The hostile-zip reader and the job store, without Redis or a model (fast)."""

from __future__ import annotations

import io
import struct
import time
import zipfile
from pathlib import Path

import pytest

from devtools.jobs_support import zip_bytes
from midas_service.config import ConfigError, JobSettings
from midas_service.jobs.archive import ArchiveLimits, ArchiveRefused, read_entries, safe_name
from midas_service.jobs.store import JobStore, QuotaExceeded, Upload

LIMITS = ArchiveLimits(max_entries=10, max_total_bytes=1_000_000, max_entry_bytes=200_000)


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("a.jpg", "a.jpg"),
        ("sub/./b.jpg", "sub/b.jpg"),
        ("sub//c.jpg", "sub/c.jpg"),
        ("../x.png", None),
        ("sub/../../x.png", None),
        ("a/..", None),
        ("/etc/passwd", None),
        ("\\\\server\\share\\x.png", None),
        ("C:\\x.png", None),
        ("c:x.png", None),
        ("..\\x.png", None),
        ("a\x00b.png", None),
        ("bell\x07.png", None),
        ("", None),
        ("./", None),
    ],
)
def test_safe_name(name, safe):
    assert safe_name(name) == safe


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "in.zip"
    path.write_bytes(data)
    return path


def entries(
    path: Path, limits: ArchiveLimits = LIMITS
) -> dict[str, tuple[bytes | None, str | None]]:
    return {e.name: (e.data, e.problem) for e in read_entries(path, limits)}


def test_every_bad_entry_is_reported_and_good_ones_read(tmp_path):
    archive = zip_bytes(
        {"ok.jpg": b"fine", "../up.jpg": b"x", "/abs.jpg": b"x", "big.jpg": bytes(300_000)},
        links={"link.jpg": "../../etc/passwd"},
    )
    found = entries(write(tmp_path, archive))
    assert found["ok.jpg"] == (b"fine", None)
    assert found["../up.jpg"] == (None, "unsafe path: not read")
    assert found["/abs.jpg"] == (None, "unsafe path: not read")
    assert found["link.jpg"] == (None, "a symbolic link: not followed")
    assert found["big.jpg"][0] is None and "over the 200000 byte limit" in found["big.jpg"][1]


def test_special_files_and_encrypted_entries_are_not_read(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        fifo = zipfile.ZipInfo("fifo")
        fifo.external_attr = 0o010644 << 16
        archive.writestr(fifo, b"")
        archive.writestr("secret.jpg", b"x")
    data = bytearray(buffer.getvalue())
    # Set the "encrypted" flag bit of secret.jpg in its local and central headers.
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature, data.find(signature) + 1)
        flags = struct.unpack_from("<H", data, at + offset)[0]
        struct.pack_into("<H", data, at + offset, flags | 0x1)
    found = entries(write(tmp_path, bytes(data)))
    assert found["fifo"] == (None, "not a regular file")
    assert found["secret.jpg"] == (None, "encrypted: not supported")


def lie_about_size(data: bytes, size: int) -> bytes:
    """The zip with its (only) entry's uncompressed size rewritten in both headers."""
    patched = bytearray(data)
    struct.pack_into("<I", patched, patched.find(b"PK\x03\x04") + 22, size)
    struct.pack_into("<I", patched, patched.find(b"PK\x01\x02") + 24, size)
    return bytes(patched)


def test_an_entry_that_expands_past_its_header_is_not_read_whole(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.jpg", bytes(5_000_000))  # 5 MB of zeros: ~5 KB compressed
    path = write(tmp_path, lie_about_size(buffer.getvalue(), 100))
    (entry,) = read_entries(path, LIMITS)
    assert entry.data is None and entry.problem.startswith("corrupt entry")


def test_whole_archive_limits(tmp_path):
    many = zip_bytes({f"{i}.jpg": b"x" for i in range(11)})
    with pytest.raises(
        ArchiveRefused, match=r"11 entries \(files and folders\), more than the limit of 10"
    ):
        list(read_entries(write(tmp_path, many), LIMITS))
    huge = zip_bytes({f"{i}.jpg": bytes(150_000) for i in range(7)})
    with pytest.raises(ArchiveRefused, match="expands to 1050000 bytes"):
        list(read_entries(write(tmp_path, huge), LIMITS))
    with pytest.raises(ArchiveRefused, match="not a readable zip"):
        list(read_entries(write(tmp_path, b"PK\x03\x04 truncated"), LIMITS))


def test_store_quota_and_expiry(tmp_path):
    store = JobStore(tmp_path / "jobs", max_bytes=10_000, ttl_s=60)
    upload = Upload("a.jpg", io.BytesIO(bytes(4_000)), "photo")
    folder = store.create("A" * 24, "", "photos", {}, [upload])
    assert (folder / "input" / "0.bin").stat().st_size == 4_000
    store.check_room(5_000)
    with pytest.raises(QuotaExceeded, match="MIDAS_JOBS_MAX_MB"):
        store.check_room(7_000)
    half_made = store.root / ("B" * 24)
    half_made.mkdir()  # no job.json: judged by its age
    assert store.sweep(time.time() + 30) == []
    assert sorted(store.sweep(time.time() + 61)) == ["A" * 24, "B" * 24]
    assert not folder.exists() and not half_made.exists()


def test_job_settings_from_env():
    settings = JobSettings.from_env({"MIDAS_JOBS_TTL_S": "60", "MIDAS_JOBS_MAX_MB": "1"})
    assert (settings.ttl_s, settings.max_store_bytes) == (60, 1024 * 1024)
    assert settings.takeover_bound_s == 25
    with pytest.raises(ConfigError, match="twice"):
        JobSettings.from_env({"MIDAS_JOBS_TAKEOVER_S": "5", "MIDAS_JOBS_HEARTBEAT_S": "5"})
    with pytest.raises(ConfigError, match="MIDAS_JOBS_TTL_S must be a whole number"):
        JobSettings.from_env({"MIDAS_JOBS_TTL_S": "a day"})
