"""Compute turns: one at a time, first come first served, a bounded line and a bounded wait."""

from __future__ import annotations

import threading
import time

import pytest

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
