"""Getting weights: local files, the wrapper format, and real downloads from a loopback server."""

from __future__ import annotations

import errno
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from midas_service.export.weights import (
    CHECKPOINT_NAME,
    WeightsError,
    load_checkpoint,
    obtain_checkpoint,
    verify_layout,
)


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[bytes, int | None]]] = {}

    def do_GET(self) -> None:
        if self.path not in self.routes:
            self.send_error(404)
            return
        body, declared_length = self.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(declared_length or len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(weights_file: Path) -> Iterator[str]:
    good = weights_file.read_bytes()
    wrong_layout = Path(weights_file.parent / "wrong.pt")
    state = torch.load(weights_file, weights_only=True)
    state.pop("scratch.output_conv.4.bias")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, wrong_layout)
    _Handler.routes = {
        "/good.pt": (good, None),
        "/truncated.pt": (good[: len(good) // 2], len(good)),
        "/wrong.pt": (wrong_layout.read_bytes(), None),
    }
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_local_file_loads_and_records_its_hash(weights_file):
    checkpoint = load_checkpoint(weights_file)
    assert checkpoint.sha256 == hashlib.sha256(weights_file.read_bytes()).hexdigest()
    assert not checkpoint.untrained


def test_wrapped_checkpoint_is_accepted(weights_file, tmp_path):
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"model": torch.load(weights_file, weights_only=True), "epoch": 3}, wrapped)
    checkpoint = load_checkpoint(wrapped)
    assert len(checkpoint.state_dict) == 482


def test_layout_errors_name_the_offending_keys(weights_file):
    state = torch.load(weights_file, weights_only=True)
    state["scratch.layer1_rn.weight"] = torch.zeros(64, 32, 1, 1)
    del state["pretrained.layer1.0.weight"]
    with pytest.raises(WeightsError) as info:
        verify_layout(state)
    message = str(info.value)
    assert "pretrained.layer1.0.weight" in message and "scratch.layer1_rn.weight" in message


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(junk)


def test_download_success_is_cached_atomically(server, weights_file, tmp_path):
    checkpoint = obtain_checkpoint(url=f"{server}/good.pt", directory=tmp_path)
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == weights_file.read_bytes()
    assert checkpoint.source == f"{server}/good.pt"
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]  # no temp file left


def test_download_with_matching_sha256(server, weights_file, tmp_path):
    digest = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    checkpoint = obtain_checkpoint(
        expected_sha256=digest, url=f"{server}/good.pt", directory=tmp_path
    )
    assert checkpoint.sha256 == digest


@pytest.mark.parametrize(
    ("route", "sha256", "message"),
    [
        ("/good.pt", "0" * 64, "expected 0000"),
        ("/truncated.pt", None, "truncated|failed"),
        ("/missing.pt", None, "Not Found"),
        ("/wrong.pt", None, "not the MiDaS v2.1 small layout"),
    ],
)
def test_download_failures_leave_nothing_behind(server, tmp_path, route, sha256, message):
    with pytest.raises(WeightsError, match=message):
        obtain_checkpoint(expected_sha256=sha256, url=f"{server}{route}", directory=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_no_network_says_where_to_put_the_file(tmp_path):
    with pytest.raises(WeightsError) as info:
        obtain_checkpoint(url="http://127.0.0.1:9/midas.pt", directory=tmp_path)
    message = str(info.value)
    assert "--weights" in message and str(tmp_path / CHECKPOINT_NAME) in message
    assert "--random-weights" in message


def test_an_unwritable_cache_is_reported_as_such_not_as_a_download_failure(server, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(WeightsError) as info:
        obtain_checkpoint(url=f"{server}/good.pt", directory=blocker / "cache")
    message = str(info.value)
    assert "could not download" not in message
    assert f"could not create the download file in {blocker / 'cache'}" in message
    assert "Not a directory" in message and "MIDAS_CACHE_DIR" in message


def test_a_full_disk_is_reported_as_such(server, tmp_path, monkeypatch):
    import midas_service.export.weights as weights

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(weights.os, "fsync", disk_full)
    with pytest.raises(WeightsError) as info:
        obtain_checkpoint(url=f"{server}/good.pt", directory=tmp_path)
    message = str(info.value)
    assert "could not download" not in message
    assert "could not write" in message and "No space left on device" in message
    assert list(tmp_path.iterdir()) == []  # the partial download is removed


def test_the_export_script_checks_sha256_of_a_local_checkpoint(weights_file, tmp_path):
    """Pinning with --sha256 holds for --weights too, not only for the download."""
    import subprocess

    from devtools.support import EXPORT, ROOT

    output = tmp_path / "pinned.pt"
    result = subprocess.run(
        [
            *EXPORT, "--weights", str(weights_file), "--sha256", "ab" * 32, "--output", str(output),
        ],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    digest = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    assert result.returncode == 1, result.stderr
    assert f"has SHA-256 {digest}, expected {'ab' * 32}" in result.stderr
    assert not output.exists() and not output.with_suffix(".onnx").exists()
