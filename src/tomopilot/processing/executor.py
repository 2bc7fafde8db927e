"""Where preprocessing tasks run: in-process, or on Dask (a local cluster or a facility's).

:class:`ThreadExecutor` runs tasks on threads of this process (the default on one machine:
no cluster to start, and a lone movie gets every core). :class:`DaskExecutor` is the
distributed backend (DESIGN.md §2). By default it starts a
``distributed.LocalCluster`` sized to the machine: one single-threaded worker process per core,
each allowed an equal share of the memory. ``scheduler="tcp://host:8786"`` connects to an
existing scheduler instead. :class:`SerialExecutor` runs tasks one after the other in this
process (tests, debugging, ``--scheduler serial``). Both deliver results in submission order
and report each completion to a callback, so the caller can draw a progress bar; a task that
raises is reported as a failed :class:`TaskOutcome` and never stops the others.

Slurm at a facility (dask-jobqueue, the optional extra ``tomopilot[slurm]``)::

    from dask_jobqueue import SLURMCluster
    cluster = SLURMCluster(
        queue="cpu", account="cryoem", cores=8, processes=8, memory="64GB",
        walltime="04:00:00", job_extra_directives=["--exclusive"],
        worker_extra_args=["--nthreads", "1"],
    )
    cluster.scale(jobs=4)            # 4 Slurm jobs = 32 single-threaded workers
    print(cluster.scheduler_address) # pass it to: tomopilot preprocess ... --scheduler ADDRESS

or call :func:`slurm_executor` to do the same from Python. Workers need the same Python
environment and must see the project directory at the same path (a shared file system).

Examples
--------
>>> with SerialExecutor() as executor:
...     outcomes = executor.map(lambda x: 10 // x, [5, 0, 2])
>>> [o.value for o in outcomes], outcomes[1].error.split(":")[0]
([2, None, 5], 'ZeroDivisionError')
"""

from __future__ import annotations

import importlib
import os
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class TaskOutcome(Generic[R]):
    """The result of one task: its value, or the error that stopped it."""

    index: int
    value: R | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the task returned normally."""
        return self.error is None


class Executor(Protocol):
    """Runs independent tasks and reports each completion."""

    n_workers: int

    def map(
        self,
        function: Callable[[T], R],
        items: Sequence[T],
        *,
        on_done: Callable[[TaskOutcome[R]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[TaskOutcome[R]]:
        """Apply ``function`` to every item; outcomes come back in the order of ``items``.

        ``should_stop`` is polled between completions; when it returns True the tasks not yet
        finished are cancelled and reported as errors ("cancelled").
        """
        ...

    def close(self) -> None:
        """Release the workers."""
        ...


def _distributed() -> Any:
    """The ``distributed`` module, imported on first use (it is slow to import)."""
    return importlib.import_module("distributed")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _outcome(index: int, result: Callable[[], R]) -> TaskOutcome[R]:
    """The outcome of task ``index``: the value ``result()`` returns, or the error it raises."""
    try:
        return TaskOutcome(index, value=result())
    except Exception as exc:
        return TaskOutcome(index, error=_describe(exc))


class _Closing:
    def __enter__(self: Any) -> Any:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        """Release resources."""


class SerialExecutor(_Closing):
    """Run tasks one by one in the calling process."""

    n_workers = 1

    def map(
        self,
        function: Callable[[T], R],
        items: Sequence[T],
        *,
        on_done: Callable[[TaskOutcome[R]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[TaskOutcome[R]]:
        """See :meth:`Executor.map`."""
        outcomes: list[TaskOutcome[R]] = []
        for index, item in enumerate(items):
            if should_stop is not None and should_stop():
                outcome: TaskOutcome[R] = TaskOutcome(index, error="cancelled")
            else:
                outcome = _outcome(index, partial(function, item))
            outcomes.append(outcome)
            if on_done is not None:
                on_done(outcome)
        return outcomes


class ThreadExecutor(_Closing):
    """Run tasks on threads of this process: nothing to start or stop, every core busy.

    For a job on one machine this is the fast path: starting and stopping a Dask LocalCluster
    costs seconds of wall and CPU time, as much as a 4K movie's whole correction. numpy and
    scipy's FFTs release the GIL, so a movie per thread keeps the cores busy; with fewer tasks
    than cores each task gets several threads (:meth:`threads_per_task`).

    Parameters
    ----------
    n_workers
        Tasks run at once (default: one per core, fewer if memory says so).
    memory_per_task_bytes
        Expected peak memory of one task, to bound ``n_workers``.
    cores
        Cores to use (default: those this process may run on).
    """

    def __init__(
        self,
        n_workers: int | None = None,
        *,
        memory_per_task_bytes: int | None = None,
        cores: int | None = None,
    ) -> None:
        self.cores = max(1, cores or available_cores())
        self.n_workers = max(1, n_workers or default_worker_count(memory_per_task_bytes))

    def threads_per_task(self, n_tasks: int) -> int:
        """Threads each of ``n_tasks`` tasks may use so that the cores are shared out."""
        running = max(1, min(n_tasks, self.n_workers))
        return max(1, self.cores // running)

    def map(
        self,
        function: Callable[[T], R],
        items: Sequence[T],
        *,
        on_done: Callable[[TaskOutcome[R]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[TaskOutcome[R]]:
        """See :meth:`Executor.map`."""
        if not items:
            return []
        outcomes: dict[int, TaskOutcome[R]] = {}
        with ThreadPoolExecutor(min(self.n_workers, len(items))) as pool:
            futures = {pool.submit(function, item): i for i, item in enumerate(items)}
            stopping = False
            for future in as_completed(futures):
                index = futures[future]
                if index in outcomes:  # cancelled below
                    continue
                outcome: TaskOutcome[R] = _outcome(index, future.result)
                outcomes[index] = outcome
                if on_done is not None:
                    on_done(outcome)
                if not stopping and should_stop is not None and should_stop():
                    stopping = True  # tasks already running finish; the others are dropped
                    for other, other_index in futures.items():
                        if other_index not in outcomes and other.cancel():
                            cancelled: TaskOutcome[R] = TaskOutcome(other_index, error="cancelled")
                            outcomes[other_index] = cancelled
                            if on_done is not None:
                                on_done(cancelled)
        return [outcomes[i] for i in range(len(items))]


def threads_per_task(executor: object, n_tasks: int) -> int:
    """Threads a task may use on ``executor``: more than one only for in-process threads."""
    share = getattr(executor, "threads_per_task", None)
    return int(share(n_tasks)) if callable(share) else 1


def available_cores() -> int:
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - non-Linux


def machine_memory_bytes() -> int:
    """Physical memory of this machine (bytes), or 8 GiB when it cannot be read."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 1024**3


def default_worker_count(memory_per_task_bytes: int | None = None) -> int:
    """One worker per core, fewer if each task needs more memory than the machine can give."""
    workers = available_cores()
    if memory_per_task_bytes:
        workers = max(1, min(workers, int(0.8 * machine_memory_bytes() // memory_per_task_bytes)))
    return workers


class DaskExecutor(_Closing):
    """Run tasks on a Dask cluster: a new LocalCluster, or an existing scheduler.

    Parameters
    ----------
    scheduler
        Address of a running scheduler (``tcp://host:8786``); None starts a LocalCluster.
    n_workers
        LocalCluster workers (default: one per core, see :func:`default_worker_count`).
    processes
        LocalCluster workers as processes (default) or as threads of this process.
    memory_per_task_bytes
        Expected peak memory of one task, to size the LocalCluster.
    """

    def __init__(
        self,
        scheduler: str | None = None,
        *,
        n_workers: int | None = None,
        processes: bool = True,
        memory_per_task_bytes: int | None = None,
    ) -> None:
        distributed = _distributed()

        self._cluster: Any = None
        if scheduler:
            self._client: Any = distributed.Client(scheduler)
            info = self._client.scheduler_info()
            self.n_workers = max(1, len(info.get("workers", {})))
        else:
            workers = n_workers or default_worker_count(memory_per_task_bytes)
            memory = max(1, machine_memory_bytes() // workers)
            self._cluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=processes,
                memory_limit=memory if processes else 0,
                dashboard_address=None,
            )
            self._client = distributed.Client(self._cluster)
            self.n_workers = workers

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard, when the cluster serves one."""
        link = getattr(self._client, "dashboard_link", None)
        return str(link) if link else None

    def map(
        self,
        function: Callable[[T], R],
        items: Sequence[T],
        *,
        on_done: Callable[[TaskOutcome[R]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[TaskOutcome[R]]:
        """See :meth:`Executor.map`."""
        as_completed = _distributed().as_completed

        if not items:
            return []
        futures = self._client.map(function, list(items), pure=False)
        index_of = {future.key: i for i, future in enumerate(futures)}
        outcomes: dict[int, TaskOutcome[R]] = {}
        pending = as_completed(futures, with_results=False)
        for future in pending:
            index = index_of[future.key]
            outcome: TaskOutcome[R] = _outcome(index, future.result)
            outcomes[index] = outcome
            if on_done is not None:
                on_done(outcome)
            if should_stop is not None and should_stop():
                for other in futures:
                    if index_of[other.key] not in outcomes:
                        other.cancel()
                        cancelled: TaskOutcome[R] = TaskOutcome(
                            index_of[other.key], error="cancelled"
                        )
                        outcomes[cancelled.index] = cancelled
                        if on_done is not None:
                            on_done(cancelled)
                break
        return [outcomes[i] for i in range(len(futures))]

    def close(self) -> None:
        """Close the client and, if this executor started it, the LocalCluster."""
        try:
            self._client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()


def slurm_executor(
    *,
    jobs: int,
    cores_per_job: int,
    memory_per_job: str,
    queue: str | None = None,
    account: str | None = None,
    walltime: str = "04:00:00",
    extra_directives: list[str] | None = None,
) -> DaskExecutor:
    """Start a dask-jobqueue ``SLURMCluster`` of ``jobs`` Slurm jobs and connect to it.

    Each Slurm job runs ``cores_per_job`` single-threaded worker processes. Needs the optional
    extra ``tomopilot[slurm]``.
    """
    try:
        jobqueue: Any = importlib.import_module("dask_jobqueue")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("install tomopilot[slurm] to run on Slurm") from exc
    cluster = jobqueue.SLURMCluster(
        queue=queue,
        account=account,
        cores=cores_per_job,
        processes=cores_per_job,
        memory=memory_per_job,
        walltime=walltime,
        job_extra_directives=extra_directives or [],
    )
    cluster.scale(jobs=jobs)
    executor = DaskExecutor(cluster.scheduler_address)
    executor._cluster = cluster
    return executor


def format_traceback(exc: BaseException) -> str:
    """The last frames of an exception's traceback, for logs."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3))
