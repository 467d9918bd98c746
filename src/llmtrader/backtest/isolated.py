"""Backtests with their answers at hand (the baseline, replays), each in a database of its own, in this process or
in worker processes; their rows join the backtests' database when they end.

Such a run is CPU-bound and commits its steps in batches (:func:`llmtrader.backtest.replay.run_backtest`): written
straight into ``backtests.db`` it would hold that file's write lock most of the time, and another backtest writing
there meanwhile would fail ("database is locked"). In a file of its own beside it, it takes the shared file's lock
only for the one transaction that copies its rows over (:mod:`llmtrader.storage.run_copy`), ids renumbered. And runs
that share no file can run side by side: an arena replays its contestants in worker processes, up to one per core
(:func:`run_parallel`), each stepping through the same history, which is read once and handed to every worker.

A run that calls a model records each answer as it comes, straight into ``backtests.db`` (an answer paid for is
never held back), one short transaction at a time: it does not go through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmtrader.backtest.clients import ReplayClient
from llmtrader.backtest.data import History
from llmtrader.backtest.replay import BacktestResult, Progress, run_backtest
from llmtrader.backtest.spec import BacktestSpec
from llmtrader.config.settings import Settings
from llmtrader.errors import StoreError
from llmtrader.llm.baseline import BaselineClient
from llmtrader.llm.port import DecisionClient
from llmtrader.storage.run_copy import copy_database
from llmtrader.storage.store import Store

RUN_DB = "run.db"


def usable_cores() -> int:
    """The cores this process may run on."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def _private_dir(store: Store) -> Path:
    # Beside the backtests' database: the same file system, and owner-only (mkdtemp makes it 0700).
    return Path(tempfile.mkdtemp(prefix=".backtest-", dir=store.path.parent))


def _merge(store: Store, directory: Path) -> None:
    """Copy the run database in ``directory`` (when the run got as far as making it) into ``store``, then remove
    it. A copy that fails keeps it, and the StoreError names where: the run is never lost unseen."""
    path = directory / RUN_DB
    if path.exists():
        try:
            copy_database(store, path)
        except Exception as exc:
            raise StoreError(
                f"a backtest run could not be copied into {store.path} ({exc}); its own database is kept at {path}"
            ) from exc
    shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def private_store(store: Store) -> Iterator[Store]:
    """A database of its own beside ``store`` for a run with its answers at hand, copied into ``store`` on leaving,
    also when the run failed (its row says so, as it would have; the error raised is the run's)."""
    directory = _private_dir(store)
    failed = False
    try:
        mine = Store(directory / RUN_DB, durable=False)
        try:
            yield mine
        except BaseException:
            failed = True
            raise
        finally:
            mine.close()
    finally:
        if failed:
            with contextlib.suppress(Exception):
                _merge(store, directory)
        else:
            _merge(store, directory)


def local_client(spec: BacktestSpec, run_id: str, answers: Store, record_to: Store) -> DecisionClient:
    """The decision client of a run with its answers at hand: the replay of ``spec.replay_of`` (its answers read
    from ``answers``, the ones given recorded in ``record_to``), else the baseline."""
    if spec.replay_of is not None:
        return ReplayClient(answers, spec.replay_of, run_id, record_to=record_to)
    return BaselineClient()


async def run_isolated(
    settings: Settings,
    spec: BacktestSpec,
    history: History,
    store: Store,
    *,
    run_id: str,
    notes: Sequence[str] = (),
    progress: Progress | None = None,
    should_stop: Callable[[], str | None] | None = None,
    references: Mapping[str, Any] | None = None,
) -> BacktestResult:
    """:func:`~llmtrader.backtest.replay.run_backtest` of a replay (``spec.replay_of``) or of the baseline, in this
    process, in a database of its own whose rows are copied into ``store`` when the run ends."""
    with private_store(store) as mine:
        client = local_client(spec, run_id, store, mine)
        return await run_backtest(settings, spec, history, mine, client, run_id=run_id, notes=notes, progress=progress,
                                  should_stop=should_stop, references=references)  # fmt: skip


# ---- in worker processes -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    settings: Settings
    spec: BacktestSpec
    run_id: str
    answers: Path  # the backtests' database, where a replay reads its source's answers
    directory: Path  # the run's own database goes there


_WORKER_HISTORY: list[History] = []


def _start_worker(history: History) -> None:
    _WORKER_HISTORY[:] = [history]


def _work(job: _Job) -> BacktestResult:
    """One run, in a worker process."""
    mine = Store(job.directory / RUN_DB, durable=False)
    try:
        answers = Store(job.answers, durable=False) if job.spec.replay_of is not None else mine
        try:
            client = local_client(job.spec, job.run_id, answers, mine)
        finally:
            if answers is not mine:
                answers.close()
        return asyncio.run(run_backtest(job.settings, job.spec, _WORKER_HISTORY[0], mine, client, run_id=job.run_id))
    finally:
        mine.close()


async def run_parallel(
    settings: Settings,
    history: History,
    store: Store,
    runs: Sequence[tuple[BacktestSpec, str]],
    *,
    processes: int,
) -> list[BacktestResult]:
    """Make each ``(spec, run id)`` of ``runs`` (replays, the baseline) in up to ``processes`` worker processes,
    each run in a database of its own, copied into ``store`` as soon as it ends; the results in the order of
    ``runs``. A run that failed is copied too (its row says so), and its error raised once the others ended."""
    directories = [_private_dir(store) for _ in runs]
    results: list[BacktestResult | None] = [None] * len(runs)
    error: BaseException | None = None
    kept: set[int] = set()  # runs whose copy failed: their databases stay where the error says
    # spawn: a fork of a process with threads (the event loop's, an HTTP client's) can inherit a held lock.
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(
            max(1, processes), mp_context=context, initializer=_start_worker, initargs=(history,)
        ) as pool:
            pending = {
                asyncio.wrap_future(pool.submit(_work, _Job(settings, spec, run_id, store.path, directory))): i
                for i, ((spec, run_id), directory) in enumerate(zip(runs, directories, strict=True))
            }
            try:
                while pending:
                    done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for future in done:
                        i = pending.pop(future)
                        # In the event loop's thread, between two awaits: no other task is inside a transaction.
                        try:
                            _merge(store, directories[i])
                        except StoreError as exc:  # its directory is kept; the other runs go on
                            kept.add(i)
                            error = error or exc
                        failure = future.exception()
                        if failure is not None:
                            error = error or failure
                        else:
                            results[i] = future.result()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        for i, directory in enumerate(directories):
            if i not in kept:
                shutil.rmtree(directory, ignore_errors=True)
    if error is not None:
        raise error
    return [r for r in results if r is not None]
