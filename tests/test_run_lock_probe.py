"""`status` asks who runs an account (RunLock.holder) at any instant without making the agent's own lock
attempt fail: the probe takes no lock the agent's could collide with."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from llmtrader.cycle.scheduler import RunLock


def test_concurrent_holder_probes_never_make_acquire_fail(tmp_path: Path) -> None:
    db = tmp_path / "llmtrader.db"
    agent = RunLock(db, "main")
    agent.acquire()  # the file exists, as after any earlier run
    agent.release()
    stop = threading.Event()
    seen: list[int | None] = []

    def probe() -> None:
        reader = RunLock(db, "main")
        while not stop.is_set():
            seen.append(reader.holder())

    readers = [threading.Thread(target=probe) for _ in range(4)]
    for thread in readers:
        thread.start()
    failures = 0
    try:
        for _ in range(2000):
            try:
                agent.acquire()
            except Exception:
                failures += 1
            else:
                agent.release()
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert failures == 0
    assert len(seen) > 100 and set(seen) <= {None, os.getpid()}  # the probes ran, and saw the agent or none


def test_holder_sees_the_agent_and_a_second_agent_is_still_refused(tmp_path: Path) -> None:
    db = tmp_path / "llmtrader.db"
    agent = RunLock(db, "main")
    assert agent.holder() is None  # no file yet: nothing created
    assert not agent.path.exists()
    agent.acquire()
    try:
        assert RunLock(db, "main").holder() == os.getpid()
        assert RunLock(db, "other").holder() is None
        second = RunLock(db, "main")
        try:
            second.acquire()
        except Exception as exc:
            assert f"pid {os.getpid()}" in str(exc)
        else:
            raise AssertionError("a second agent took the lock")
    finally:
        agent.release()
    assert RunLock(db, "main").holder() is None
