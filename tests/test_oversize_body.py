"""Oversize uploads from clients that send the whole body before reading get the 413 JSON.

Such clients (Python urllib, many SDKs) send no ``Expect: 100-continue``; without the drain
(midas_service/web/unread_body.py) Gunicorn closed the socket on their unread bytes and they saw a
connection reset. Raw sockets here send every byte first, then read the answer.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from devtools.servers import gunicorn
from midas_service.web.unread_body import DiscardUnreadBody

MB = 1024 * 1024
# MIDAS_MAX_UPLOAD_MB of the server under test (the default); the drain bound is twice that.
# Bodies this large outgrow the loopback socket buffers, so without the drain a client is
# still sending when the server closes (a body of 1-2 MB was often absorbed whole and passed).
LIMIT_MB = 10
BOUND = 2 * LIMIT_MB * MB
PIECE = 64 * 1024


@pytest.fixture(scope="module")
def server(model_path, tmp_path_factory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("oversize")
    env = {"MIDAS_MAX_UPLOAD_MB": str(LIMIT_MB), "MIDAS_WARMUP_RUNS": "1"}
    with gunicorn(model_path, workdir, workers=1, **env) as (base, _):
        yield base


def pieces(size: int) -> Iterator[bytes]:
    """``size`` bytes of a JPEG-looking upload, in 64 KiB pieces."""
    first = b"\xff\xd8\xff\xe0" + bytes(PIECE - 4)
    yield first[:size]
    for start in range(PIECE, size, PIECE):
        yield bytes(min(PIECE, size - start))


def raw_request(size: int) -> tuple[bytes, Iterator[bytes]]:
    head = f"Content-Type: image/jpeg\r\nContent-Length: {size}\r\n"
    return head.encode(), pieces(size)


def multipart_request(size: int) -> tuple[bytes, Iterator[bytes]]:
    """A multipart form whose whole body (framing included) is ``size`` bytes."""
    boundary = "midas-test-boundary"
    opening = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    closing = f"\r\n--{boundary}--\r\n".encode()
    file_size = size - len(opening) - len(closing)
    head = f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {size}\r\n"
    return head.encode(), iter([opening, *pieces(file_size), closing])


def chunked_request(size: int) -> tuple[bytes, Iterator[bytes]]:
    """No Content-Length: ``size`` bytes as HTTP/1.1 chunks, then the closing empty chunk."""

    def chunks() -> Iterator[bytes]:
        for piece in pieces(size):
            yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        yield b"0\r\n\r\n"

    return b"Content-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n", chunks()


BODIES = {"raw": raw_request, "multipart": multipart_request, "chunked": chunked_request}


def send_all_then_read(base: str, head: bytes, body: Iterator[bytes]) -> tuple[int, bytes]:
    """POST /predict the way urllib does: every byte first, then read (status, body)."""
    address = urlsplit(base)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        request_line = f"POST /predict HTTP/1.1\r\nHost: {address.netloc}\r\n".encode()
        sock.sendall(request_line + head + b"\r\n")
        for piece in body:
            sock.sendall(piece)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


def worker_pid(base: str) -> int:
    return requests.get(f"{base}/readyz", timeout=10).json()["pid"]


def assert_serves_a_photo(base: str, jpeg: bytes) -> None:
    answer = requests.post(
        f"{base}/predict", data=jpeg, headers={"Content-Type": "image/jpeg"}, timeout=30
    )
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/jpeg"


@pytest.mark.parametrize("kind", BODIES)
@pytest.mark.parametrize("size", [LIMIT_MB * MB + 65 * 1024 + 1, 12 * MB, BOUND])
def test_oversize_body_sent_whole_gets_the_413_json(server, jpeg_640x480, kind, size):
    pid = worker_pid(server)
    status, body = send_all_then_read(server, *BODIES[kind](size))
    assert status == 413
    document = json.loads(body)
    assert document["error"]["code"] == "too_large"
    assert f"{LIMIT_MB:g} MB limit" in document["error"]["message"]
    assert document["request_id"]
    assert_serves_a_photo(server, jpeg_640x480)
    assert worker_pid(server) == pid  # the same worker, not a replacement


@pytest.mark.parametrize("kind", ["raw", "chunked"])
def test_body_over_the_bound_is_cut_off_and_the_worker_serves_on(server, jpeg_640x480, kind):
    """Past twice the limit the service stops reading: the client may see a reset (documented),
    the worker must neither hang nor die."""
    pid = worker_pid(server)
    try:
        status, _ = send_all_then_read(server, *BODIES[kind](BOUND + 4 * MB))
        assert status == 413
    except ConnectionError:
        pass
    assert_serves_a_photo(server, jpeg_640x480)
    assert worker_pid(server) == pid


# ---- the middleware alone ----------------------------------------------------------------------


def run_middleware(body: bytes, bound: int, app_reads: int, **environ: str) -> int:
    """Bytes of ``body`` read in all when the app reads ``app_reads`` bytes and answers."""
    stream = io.BytesIO(body)

    def app(env, start_response):
        env["wsgi.input"].read(app_reads)
        start_response("413 Content Too Large", [])
        return [b""]

    DiscardUnreadBody(app, bound)({"wsgi.input": stream, **environ}, lambda *args: None)
    return stream.tell()


def test_middleware_reads_to_the_end_within_the_bound():
    body = bytes(1000)
    assert run_middleware(body, 1000, 10, CONTENT_LENGTH="1000") == 1000
    chunked = {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": "1"}
    assert run_middleware(body, 1000, 10, **chunked) == 1000


def test_middleware_reads_no_further_than_the_bound():
    assert run_middleware(bytes(5000), 1000, 10, CONTENT_LENGTH="5000") == 10  # declared too big
    assert run_middleware(bytes(5000), 1000, 10, CONTENT_LENGTH="300") == 300  # never past it
    chunked = {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": "1"}
    assert run_middleware(bytes(5000), 1000, 10, **chunked) == 1001  # stops one byte past
    assert run_middleware(bytes(5000), 1000, 10) == 10  # no length, unterminated: never read
