"""Running a job's tasks: a progress event per finished task, and the exit status it ends with.

Motion correction and CTF estimation both run one task per tilt on an :class:`Executor`, report
progress as :class:`~tomopilot.core.events.Progress` events and stop when RELION asks the job
to abort; the pieces they share are here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tomopilot.core.events import EventBus, Progress
from tomopilot.processing.executor import Executor, SerialExecutor, TaskOutcome
from tomopilot.processing.relion_job import JobStatus, RelionJob

T = TypeVar("T")
R = TypeVar("R")


def run_job_tasks(
    job: RelionJob,
    function: Callable[[T], R],
    todo: Sequence[T],
    *,
    on_result: Callable[[T, TaskOutcome[R]], str],
    task_name: str,
    n_done: int,
    n_total: int,
    executor: Executor | None,
    bus: EventBus,
) -> list[TaskOutcome[R]]:
    """Run ``function`` on every task of ``todo`` until the job is asked to abort.

    ``n_done`` of the job's ``n_total`` tasks were finished before; ``on_result`` records each
    outcome and returns the task's name for the progress event that follows it.
    """
    bus.emit(Progress(task=task_name, done=n_done, total=n_total))
    finished = n_done

    def on_done(outcome: TaskOutcome[R]) -> None:
        nonlocal finished
        finished += 1
        detail = on_result(todo[outcome.index], outcome)
        bus.emit(Progress(task=task_name, done=finished, total=n_total, detail=detail))

    runner = executor or SerialExecutor()
    return runner.map(function, todo, on_done=on_done, should_stop=job.abort_requested)


def end_status(job: RelionJob, outcomes: Sequence[TaskOutcome[Any]], *, failed: bool) -> JobStatus:
    """ABORTED when the job was asked to stop, else FAILURE when a task ``failed``, else SUCCESS."""
    if job.abort_requested() or any(o.error == "cancelled" for o in outcomes):
        return JobStatus.ABORTED
    return JobStatus.FAILURE if failed else JobStatus.SUCCESS
