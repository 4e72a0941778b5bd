"""The writer's byte-bounded inbox, with real threads: FIFO, blocking when full, and never
wedged by an item larger than the whole budget."""

from __future__ import annotations

import threading
import time

import pytest

from central.byte_queue import ByteBoundedInbox


def test_fifo_and_byte_accounting() -> None:
    inbox: ByteBoundedInbox[str] = ByteBoundedInbox(100)
    inbox.put("a", 10)
    inbox.put("b", 20)
    assert (inbox.qsize(), inbox.queued_bytes()) == (2, 30)
    assert inbox.get_nowait() == "a"
    assert inbox.get(timeout=0.01) == "b"
    assert inbox.get_nowait() is None
    assert inbox.get(timeout=0.01) is None
    assert inbox.queued_bytes() == 0


def test_put_blocks_while_full_and_resumes_when_drained() -> None:
    inbox: ByteBoundedInbox[int] = ByteBoundedInbox(100)
    inbox.put(1, 60)
    done = threading.Event()

    def producer() -> None:
        inbox.put(2, 60)  # 120 > 100: must wait for the consumer
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert not done.wait(0.2)
    assert inbox.get(timeout=1) == 1
    assert done.wait(5)
    thread.join()
    assert inbox.get(timeout=1) == 2


def test_an_item_over_the_budget_passes_alone() -> None:
    inbox: ByteBoundedInbox[str] = ByteBoundedInbox(10)
    inbox.put("huge", 1000)  # empty inbox: accepted, nothing can wedge
    assert inbox.get(timeout=1) == "huge"


def test_get_waits_for_a_producer() -> None:
    inbox: ByteBoundedInbox[str] = ByteBoundedInbox(10)
    timer = threading.Timer(0.1, lambda: inbox.put("late", 1))
    timer.start()
    started = time.monotonic()
    assert inbox.get(timeout=5) == "late"
    assert time.monotonic() - started < 4
    timer.join()


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ByteBoundedInbox(0)
