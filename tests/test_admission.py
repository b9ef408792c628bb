"""Compute turns: one at a time, first come first served, a bounded line and a bounded wait."""

from __future__ import annotations

import threading
import time

import pytest

from midas_service.config import ConfigError, Settings
from midas_service.serving.admission import ComputeTurns, Overloaded


def wait_until(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_a_free_turn_is_taken_at_once_and_given_back():
    turns = ComputeTurns(queue_timeout_s=1, max_waiting=0)
    assert turns.take() == 0.0
    with pytest.raises(Overloaded, match="0 requests already waiting"):
        turns.take()  # busy, and nobody may wait
    turns.give_back()
    assert turns.take() == 0.0


def test_waiting_requests_get_their_turn_in_arrival_order():
    turns = ComputeTurns(queue_timeout_s=10, max_waiting=3)
    turns.take()
    order: list[int] = []

    def request(number: int) -> None:
        turns.take()
        order.append(number)
        turns.give_back()

    threads = []
    for number in range(3):
        threads.append(threading.Thread(target=request, args=(number,)))
        threads[-1].start()
        wait_until(lambda n=number: turns.waiting == n + 1)
    turns.give_back()
    for thread in threads:
        thread.join()
    assert order == [0, 1, 2]
    assert turns.take() == 0.0  # all given back: free again


def test_a_turn_handed_straight_on_never_reports_the_worker_idle():
    """Other workers size their inferences from this report (core_share): a gap at a handover
    would let one of them start on every core while this worker computes."""
    reports: list[bool] = []
    turns = ComputeTurns(queue_timeout_s=10, max_waiting=1, on_busy=reports.append)
    turns.take()
    waiter = threading.Thread(target=lambda: (turns.take(), turns.give_back()))
    waiter.start()
    wait_until(lambda: turns.waiting == 1)
    with pytest.raises(Overloaded):
        turns.take()  # refused: reports nothing
    turns.give_back()  # straight to the waiter, which then gives the last turn back
    waiter.join()
    assert reports == [True, False]


def test_a_full_line_refuses_at_once():
    turns = ComputeTurns(queue_timeout_s=30, max_waiting=1)
    turns.take()
    waiter = threading.Thread(target=turns.take)
    waiter.start()
    wait_until(lambda: turns.waiting == 1)
    start = time.monotonic()
    with pytest.raises(Overloaded, match="1 requests already waiting"):
        turns.take()
    assert time.monotonic() - start < 1  # not after the 30 s timeout
    turns.give_back()  # to the waiter
    waiter.join()
    assert turns.waiting == 0


def test_no_turn_within_the_timeout_is_refused_and_leaves_the_line():
    turns = ComputeTurns(queue_timeout_s=0.2, max_waiting=5)
    turns.take()
    start = time.monotonic()
    with pytest.raises(Overloaded, match=r"no turn within 0.2 s"):
        turns.take()
    assert time.monotonic() - start >= 0.2
    assert turns.waiting == 0
    turns.give_back()
    assert turns.take() == 0.0  # the timed-out request did not keep a place


def test_time_already_spent_queued_counts_against_the_timeout():
    turns = ComputeTurns(queue_timeout_s=0.5, max_waiting=5)
    turns.take()
    start = time.monotonic()
    with pytest.raises(Overloaded):
        turns.take(already_waited_s=0.4)  # 0.1 s left
    assert 0.1 <= time.monotonic() - start < 0.4
    turns.give_back()
    with pytest.raises(Overloaded):  # even a free turn: it would start past the timeout
        turns.take(already_waited_s=0.6)
    assert turns.take(already_waited_s=0.4) == 0.0


def test_a_zero_queue_timeout_is_refused_at_start():
    with pytest.raises(ConfigError, match="MIDAS_QUEUE_TIMEOUT_S must be more than 0"):
        Settings.from_env({"MIDAS_QUEUE_TIMEOUT_S": "0"})
    assert Settings.from_env({"MIDAS_QUEUE_TIMEOUT_S": "0.05"}).queue_timeout_s == 0.05


def test_a_refused_request_gives_back_no_turn_it_never_held(model_path, jpeg_640x480):
    """Through the app: while one request computes, each refused one must leave that turn
    with it; handing it back would let the next request compute beside the first."""
    from midas_service.web import create_app

    settings = Settings(
        model_path=model_path, allow_untrained=True, warmup_runs=0, cache_mb=0, max_waiting=0
    )
    app = create_app(settings, load_model=False)
    app.extensions["midas_runtime"].load()
    turns = app.extensions["midas_turns"]
    client = app.test_client()

    def post():
        return client.post("/predict", data=jpeg_640x480, content_type="image/jpeg")

    turns.take()  # a request computing on this worker
    for _ in range(3):
        refused = post()
        assert refused.status_code == 503
        assert refused.get_json()["error"]["code"] == "overloaded"
    turns.give_back()  # the computing request ends
    assert post().status_code == 200
    assert turns.take() == 0.0  # and the served request gave its turn back
