"""/predict's admission: wait for this worker's compute turn, or be refused at once.

Installed by the app factory; ``take_turn()`` is called once the upload is read and the model
is ready, and the turn is given back when the request ends (teardown), before the answer is
written to a possibly slow client.
"""

from __future__ import annotations

import socket

from flask import Flask, current_app, g, request

from midas_service.config import Settings
from midas_service.inference import core_share
from midas_service.serving.admission import ClientGone, ComputeTurns, queued_seconds

EXTENSION = "midas_turns"


def install(app: Flask, settings: Settings) -> None:
    # Other workers' inferences leave this one its share of the cores while it holds a turn.
    app.extensions[EXTENSION] = ComputeTurns(
        settings.queue_timeout_s, settings.max_waiting, on_busy=core_share.set_computing
    )

    @app.teardown_request
    def give_back_turn(exc: BaseException | None) -> None:
        turns = g.pop("midas_turn", None)
        if turns is not None:
            turns.give_back()


def take_turn() -> None:
    """Raises ``Overloaded`` (no turn in time) or ``ClientGone`` (nobody left to answer)."""
    turns: ComputeTurns = current_app.extensions[EXTENSION]
    queued = queued_seconds()
    waited = turns.take(queued)
    g.midas_turn = turns
    g.stage_seconds = {"queue": queued + waited}  # Server-Timing and midas_stage_seconds
    if client_gone(request.environ.get("gunicorn.socket")):
        raise ClientGone("the client closed the connection before its turn; skipped")


def client_gone(sock: socket.socket | None) -> bool:
    """True if the peer has closed or reset the connection (the request is already read)."""
    if sock is None:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False  # open, nothing more sent: the client is waiting for its answer
    except ValueError:
        return False  # a TLS socket cannot peek; assume the client is there
    except OSError:
        return True  # reset
