"""Read what is left of a request body before answering, so that the client hears the answer.

Why: Werkzeug refuses an oversize body (``MAX_CONTENT_LENGTH``) without reading it, and a
Gunicorn sync worker then closes the socket with the unread bytes still in its receive buffer.
The kernel answers that close with a TCP reset, so a client that sends its whole body before
reading (Python urllib, many SDKs; no ``Expect: 100-continue``) sees "connection reset" instead
of the 413 JSON. Discarding the rest of the body first makes the close an orderly one.

Why a WSGI middleware rather than the 413 error handler: it sees the server's own input stream
(Werkzeug's limited stream refuses to read past the limit), it covers every early answer (413,
415, 400 with a body not read), and it runs after the app has built its answer but before the
server sends a byte of it.

The rule: a body of at most ``bound`` bytes (the app's reads and the discarding together) is
read to its end. One that declares a larger Content-Length is not read further, a chunked one
is read no more than one byte past the bound: it gets its answer and the connection is closed,
so a client still sending may see a reset. The bound caps what a refused client costs: no more
than twice what an accepted upload does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any

WSGIApp = Any  # (environ, start_response) -> iterable of bytes
DISCARD_CHUNK = 64 * 1024


class CountingInput:
    """The server's ``wsgi.input``, counting the bytes read through it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.consumed = 0

    def _count(self, data: bytes) -> bytes:
        self.consumed += len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        return self._count(self.stream.read(-1 if size is None else size))

    def readline(self, size: int | None = -1) -> bytes:
        return self._count(self.stream.readline(-1 if size is None else size))

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = self.stream.readlines(-1 if hint is None else hint)
        self.consumed += sum(len(line) for line in lines)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


def declared_length(environ: dict[str, Any]) -> int | None:
    try:
        return int(environ["CONTENT_LENGTH"])
    except (KeyError, ValueError):
        return None


def is_chunked(environ: dict[str, Any]) -> bool:
    return "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


class DiscardUnreadBody:
    """WSGI middleware: after the app answers, discard the unread body up to ``bound`` bytes,
    or the bound given for the request's path in ``paths`` (/jobs takes larger uploads)."""

    def __init__(self, app: WSGIApp, bound: int, paths: dict[str, int] | None = None) -> None:
        self.app = app
        self.bound = bound
        self.paths = paths or {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        body = CountingInput(environ["wsgi.input"])
        environ["wsgi.input"] = body
        answer = self.app(environ, start_response)
        bound = self.paths.get(environ.get("PATH_INFO", ""), self.bound)
        length = declared_length(environ)
        # Without a length, only a server-terminated (chunked) stream is safe to read to its end.
        terminated = is_chunked(environ) and environ.get("wsgi.input_terminated", False)
        if length is not None and length <= bound:
            self.discard(body, length)  # never past it: some servers hand over the raw socket
        elif length is None and terminated:
            # One byte past the bound: the end of a chunked body of exactly ``bound`` bytes (its
            # last, empty chunk) is only read by asking for more.
            self.discard(body, bound + 1)
        return answer

    @staticmethod
    def discard(body: CountingInput, up_to: int) -> None:
        """Read and drop until ``up_to`` bytes of the body have been read, or it ends."""
        while body.consumed < up_to:
            if not body.read(min(DISCARD_CHUNK, up_to - body.consumed)):
                return
