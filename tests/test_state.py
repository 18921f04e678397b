"""The pure scheduler state machine, driven by events and a fake clock: no process, no socket, no thread.

Each test plays what a backend would report (a worker is ready, a result came, a process exited) and checks
the commands the state answers with and the counts it keeps.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from jobsched import JobCancelled, JobError, JobTimeout, WorkerStartupError, WorkerState
from jobsched._slot import Worker
from jobsched._state import (
    CLOSE_GRACE,
    KILL_GRACE,
    MAX_RESTART_DELAY,
    STARTUP_FAILURE_LIMIT,
    CloseWorker,
    Command,
    Deliver,
    Entry,
    Fail,
    KillWorker,
    SchedulerState,
    SendJobs,
    StartWorker,
)
from jobsched.states import KillReason


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def entry(cost: float = 0, *, timeout: float | None = None, max_retries: int = 3,
          retry_on_timeout: bool = False, data: Any = None) -> Entry:
    return Entry(cost, data, b"payload", None, timeout, max_retries, retry_on_timeout)


def of(cmds: list[Command], kind: type) -> list[Any]:
    return [c for c in cmds if isinstance(c, kind)]


def bring_up(state: SchedulerState, clock: Clock, n: int) -> list[Worker]:
    """Set the target to n and make every started worker ready, as a backend would report."""
    state.set_target(n)
    started = of(state.tick(clock.now), StartWorker)
    assert [c.worker.index for c in started] == list(range(len(started)))
    for cmd in started:
        state.worker_spawned(cmd.worker, 100 + cmd.worker.index)
        assert state.worker_ready(cmd.worker, clock.now) == []
    return [c.worker for c in started]


def sent(sends: list[SendJobs]) -> list[tuple[int, list[int]]]:
    return [(s.worker.index, [e.index for e in s.entries]) for s in sends]


def finish(state: SchedulerState, w: Worker, clock: Clock) -> Entry:
    """The worker reports the result of the job it runs; the shell delivers it."""
    job = w._inflight[0]
    done = state.job_done(w, job.index, clock.now)
    assert done is job
    state.delivered(False)
    return done


# ---------------------------------------------------------------------------------------------- ordering


def test_one_worker_takes_jobs_by_cost_then_insertion_order() -> None:
    state, clock = SchedulerState(), Clock()
    costs = [5, 1, 3, 1, 0, 5, -2]
    for c in costs:
        state.add(entry(c))
    (w,) = bring_up(state, clock, 1)
    order = []
    while state.n_queued or w._inflight:
        for s in state.assign(clock.now):
            order.extend(e.index for e in s.entries)
        finish(state, w, clock)
    expected = [i for _, i in sorted(zip(costs, itertools.count()))]
    assert order == expected == [6, 4, 1, 3, 2, 0, 5]
    assert state.is_idle() and state.n_done == len(costs)


def test_prefetch_sends_that_many_ahead_and_a_cheaper_late_job_waits_behind_them() -> None:
    state, clock = SchedulerState(prefetch=3), Clock()
    for c in range(5):
        state.add(entry(c))
    (w,) = bring_up(state, clock, 1)
    assert sent(state.assign(clock.now)) == [(0, [0, 1, 2])]
    state.add(entry(-1))  # cheaper, but three jobs are committed already
    assert state.assign(clock.now) == []  # the worker has no room
    finish(state, w, clock)
    assert sent(state.assign(clock.now)) == [(0, [5])]  # the cheap one is next once room opens


def test_default_prefetch_gives_a_job_added_by_a_callback_the_next_free_worker() -> None:
    state, clock = SchedulerState(), Clock()
    state.add(entry(0))
    state.add(entry(10))
    (w,) = bring_up(state, clock, 1)
    assert sent(state.assign(clock.now)) == [(0, [0])]
    finish(state, w, clock)
    state.add(entry(1))  # as after_stop would, before the next dispatch
    assert sent(state.assign(clock.now)) == [(0, [2])]


def test_a_requeued_job_keeps_its_place() -> None:
    state, clock = SchedulerState(), Clock()
    for c in (1, 1, 1):
        state.add(entry(c))
    w0, w1 = bring_up(state, clock, 2)
    assert sent(state.assign(clock.now)) == [(0, [0]), (1, [1])]
    state.worker_exited(w0, "killed by signal SIGKILL", False, clock.now)  # job 0 goes back
    finish(state, w1, clock)
    assert sent(state.assign(clock.now)) == [(1, [0])]  # before job 2, added later at the same cost


# ---------------------------------------------------------------------------------------------- deaths


DEATHS = [  # (timed out, retry_on_timeout, deaths before this one, max_retries, closing) -> outcome
    (False, False, 0, 3, False, "requeue"),
    (False, False, 2, 3, False, "WorkerDied"),
    (False, False, 0, 1, False, "WorkerDied"),
    (True, False, 0, 3, False, "JobTimeout"),
    (True, True, 0, 3, False, "requeue"),
    (True, True, 2, 3, False, "JobTimeout"),
    (False, False, 2, 3, True, "requeue"),  # close(): a terminated worker's job is not its fault
]


@pytest.mark.parametrize(("timed_out", "retry", "before", "max_retries", "closing", "outcome"), DEATHS)
def test_the_fate_of_a_dead_workers_job(timed_out: bool, retry: bool, before: int, max_retries: int,
                                        closing: bool, outcome: str) -> None:
    state, clock = SchedulerState(), Clock()
    job = entry(timeout=1.0, max_retries=max_retries, retry_on_timeout=retry)
    job.deaths = [f"earlier death {i}" for i in range(before)]
    state.add(job)
    (w,) = bring_up(state, clock, 1)
    state.assign(clock.now)
    if timed_out:
        kills = of(state.tick(clock.advance(1.5)), KillWorker)
        assert [(k.reason, k.force) for k in kills] == [(KillReason.TIMEOUT, True)]
    if closing:
        state.begin_close(CLOSE_GRACE)
        state.tick(clock.now)
        w._kill_reason = KillReason.TERMINATED
    cmds = state.worker_exited(w, "killed by signal SIGKILL", False, clock.advance(0.01), "last words")
    delivered = of(cmds, Deliver)
    if outcome == "requeue":
        assert delivered == [] and state.n_queued == 1 and state.n_active == 0
    else:
        assert [d.entry for d in delivered] == [job] and state.n_queued == 0
        error = delivered[0].result
        assert isinstance(error, JobError) and delivered[0].failed
        assert error.remote_type == outcome
        assert isinstance(error, JobTimeout) == (outcome == "JobTimeout")
        if outcome == "WorkerDied":
            assert "last words" in error.remote_traceback  # the worker's last output (a crash stack)
            assert error.remote_message.count("killed by signal SIGKILL") == 1
            assert len(job.deaths or []) == before + 1


def test_a_worker_that_dies_after_ready_restarts_at_once_without_back_off() -> None:
    state, clock = SchedulerState(), Clock()
    (w,) = bring_up(state, clock, 1)
    for _ in range(6):  # crashing jobs in a row: each kills its worker after it was ready
        state.add(entry())
        state.assign(clock.now)
        state.worker_exited(w, "exit code 3", False, clock.now)
        starts = of(state.tick(clock.now), StartWorker)
        assert starts == [StartWorker(w)], "restarted at once, no back-off"
        state.worker_ready(w, clock.now)
    assert w.n_restarts == 6


def test_workers_dying_before_ready_back_off_then_give_up_with_a_startup_error() -> None:
    state, clock = SchedulerState(), Clock()
    state.set_target(1)
    (start,) = of(state.tick(clock.now), StartWorker)
    w = start.worker
    delays = []
    for attempt in range(1, STARTUP_FAILURE_LIMIT + 1):
        cmds = state.worker_exited(w, "exit code 1", False, clock.now, "ImportError: no module")
        if attempt < STARTUP_FAILURE_LIMIT:
            assert of(cmds, Fail) == []
            delays.append(w._restart_at - clock.now)
            if delays[-1]:
                assert of(state.tick(clock.now), StartWorker) == [], "backing off"
                clock.advance(delays[-1])
            assert of(state.tick(clock.now), StartWorker) == [StartWorker(w)]
        else:
            (fail,) = of(cmds, Fail)
            assert isinstance(fail.error, WorkerStartupError)
            assert "ImportError: no module" in str(fail.error)
            assert state.target == 0 and state.fatal
    assert delays == pytest.approx([0.0, 0.1]) and max(delays) <= MAX_RESTART_DELAY


def test_a_worker_that_never_connects_is_killed_after_the_start_timeout() -> None:
    state, clock = SchedulerState(start_timeout=60.0), Clock()
    state.set_target(1)
    assert len(of(state.tick(clock.now), StartWorker)) == 1
    assert of(state.tick(clock.advance(59.0)), KillWorker) == []
    (kill,) = of(state.tick(clock.advance(1.0)), KillWorker)
    assert kill.reason is KillReason.NO_HANDSHAKE and kill.force


def test_a_worker_that_hangs_up_is_given_a_moment_to_exit_then_killed() -> None:
    state, clock = SchedulerState(), Clock()
    state.add(entry())
    (w,) = bring_up(state, clock, 1)
    state.assign(clock.now)
    state.connection_lost(w, clock.now)
    assert of(state.tick(clock.now), KillWorker) == []
    (kill,) = of(state.tick(clock.advance(1.0)), KillWorker)
    assert kill.reason is KillReason.CLOSED_CONNECTION
    cmds = state.worker_exited(w, "killed by signal SIGKILL", False, clock.now)
    assert of(cmds, Deliver) == [] and state.n_queued == 1  # a first death: retried
    assert w.exit_description == "killed by signal SIGKILL (closed its connection)"


def test_a_worker_that_exits_by_itself_after_hanging_up_is_not_called_killed() -> None:
    state, clock = SchedulerState(), Clock()
    state.add(entry(max_retries=1))
    (w,) = bring_up(state, clock, 1)
    state.assign(clock.now)
    state.connection_lost(w, clock.now)
    (died,) = of(state.worker_exited(w, "exit code 1", False, clock.advance(0.1)), Deliver)
    assert died.result.remote_message == "its worker died once: worker 0 (pid 100) exit code 1"


# ---------------------------------------------------------------------------------------------- closing


def test_close_lets_busy_workers_finish_then_terminates_then_kills() -> None:
    state, clock = SchedulerState(), Clock()
    state.add(entry())
    busy, idle = bring_up(state, clock, 2)
    state.assign(clock.now)
    state.begin_close(5.0)
    closes = of(state.tick(clock.now), CloseWorker)
    assert {c.worker.index for c in closes} == {0, 1}
    assert busy.state is WorkerState.CLOSING
    assert state.worker_exited(idle, "exit code 0", True, clock.now) == []
    assert of(state.tick(clock.advance(4.9)), KillWorker) == []
    (term,) = of(state.tick(clock.advance(0.2)), KillWorker)
    assert (term.worker, term.reason, term.force) == (busy, KillReason.TERMINATED, False)
    (kill,) = of(state.tick(clock.advance(KILL_GRACE)), KillWorker)
    assert (kill.worker, kill.reason, kill.force) == (busy, KillReason.KILLED_AFTER_GRACE, True)
    assert state.worker_exited(busy, "killed by signal SIGKILL", False, clock.now) == []
    assert state.n_queued == 1 and state.n_restarts == 0  # the job is not lost, nobody is blamed
    assert state.poll_finished()


def test_scaling_down_lets_a_busy_worker_finish_its_job() -> None:
    state, clock = SchedulerState(), Clock()
    for _ in range(3):
        state.add(entry())
    w0, w1 = bring_up(state, clock, 2)
    state.assign(clock.now)
    state.set_target(1)
    assert of(state.tick(clock.now), CloseWorker) == []  # worker 1 is busy: it finishes first
    finish(state, w1, clock)
    assert state.assign(clock.now) == [] or all(s.worker is w0 for s in state.assign(clock.now))
    (close,) = of(state.tick(clock.now), CloseWorker)
    assert close.worker is w1
    assert w1.state is WorkerState.CLOSING and w0.state is WorkerState.RUNNING


def test_recycling_replaces_a_worker_after_max_jobs() -> None:
    state, clock = SchedulerState(max_jobs_per_worker=2), Clock()
    for _ in range(3):
        state.add(entry())
    (w,) = bring_up(state, clock, 1)
    for _ in range(2):
        state.assign(clock.now)
        finish(state, w, clock)
    assert state.assign(clock.now) == []  # retiring: it takes no more jobs
    (close,) = of(state.tick(clock.now), CloseWorker)
    assert close.worker is w
    assert state.worker_exited(w, "exit code 0", True, clock.now) == []
    assert of(state.tick(clock.now), StartWorker) == [StartWorker(w)] and w.generation == 2
    assert w.n_restarts == 0


def test_recycling_by_memory() -> None:
    state, clock = SchedulerState(max_worker_memory=1000), Clock()
    state.add(entry())
    (w,) = bring_up(state, clock, 1)
    state.assign(clock.now)
    state.job_done(w, 0, clock.now, rss=2000)
    assert of(state.tick(clock.now), CloseWorker) == [CloseWorker(w)]


# ---------------------------------------------------------------------------------------------- accounting


def test_a_job_counts_as_active_until_delivered() -> None:
    state, clock = SchedulerState(), Clock()
    state.add(entry())
    (w,) = bring_up(state, clock, 1)
    state.assign(clock.now)
    state.job_done(w, 0, clock.now)
    assert not state.is_idle(), "not idle while its future and after_stop are pending"
    state.delivered(False)
    assert state.is_idle() and state.n_done == 1


def test_a_result_for_a_job_the_worker_does_not_hold_drops_the_worker() -> None:
    state, clock = SchedulerState(), Clock()
    state.add(entry())
    (w,) = bring_up(state, clock, 1)
    state.assign(clock.now)
    assert state.job_done(w, 99, clock.now) is None
    (kill,) = of(state.tick(clock.now), KillWorker)
    assert kill.reason is KillReason.PROTOCOL


def test_cancel_a_queued_job_skips_it_and_settle_delivers_job_cancelled() -> None:
    state, clock = SchedulerState(), Clock()
    first, second = entry(), entry()
    state.add(first)
    state.add(second)
    assert state.cancel(first, settle=True).cancelled
    assert state.n_queued == 1 and not state.cancel(first, settle=True).cancelled  # once
    (deliver,) = list(state.ready)
    assert deliver.entry is first and isinstance(deliver.result, JobCancelled)
    bring_up(state, clock, 1)
    assert sent(state.assign(clock.now)) == [(0, [1])]


def test_cancel_a_running_job_terminates_its_worker_then_kills_it_and_does_not_retry() -> None:
    state, clock = SchedulerState(), Clock()
    job = entry()
    state.add(job)
    (w,) = bring_up(state, clock, 1)
    state.assign(clock.now)
    outcome = state.cancel(job, settle=False)
    assert outcome.cancelled and outcome.was_running
    (term,) = of(state.tick(clock.now), KillWorker)
    assert (term.reason, term.force) == (KillReason.CANCELLED, False)
    (kill,) = of(state.tick(clock.advance(1.0)), KillWorker)
    assert (kill.reason, kill.force) == (KillReason.CANCELLED, True)
    cmds = state.worker_exited(w, "killed by signal SIGTERM", False, clock.now)
    (deliver,) = of(cmds, Deliver)
    assert isinstance(deliver.result, JobCancelled) and state.n_queued == 0
    assert of(state.tick(clock.now), StartWorker) == [StartWorker(w)]  # replaced
    assert w.n_restarts == 0


def test_cancel_after_the_result_came_is_refused() -> None:
    state, clock = SchedulerState(), Clock()
    job = entry()
    state.add(job)
    (w,) = bring_up(state, clock, 1)
    state.assign(clock.now)
    state.job_done(w, job.index, clock.now)
    assert not state.cancel(job, settle=True).cancelled


def test_a_callback_error_stops_dispatch_and_closes_the_workers() -> None:
    state, clock = SchedulerState(), Clock()
    for _ in range(3):
        state.add(entry())
    bring_up(state, clock, 2)
    assert state.callback_failed(ValueError("boom"))
    assert not state.callback_failed(ValueError("again"))
    assert state.assign(clock.now) == [] and state.target == 0
    assert len(of(state.tick(clock.now), CloseWorker)) == 2
    assert state.n_queued == 3  # nothing lost


def test_kill_all_kills_every_live_worker_and_requeues_their_jobs() -> None:
    state, clock = SchedulerState(), Clock()
    for _ in range(2):
        state.add(entry())
    workers = bring_up(state, clock, 2)
    state.assign(clock.now)
    kills = state.kill_all()
    assert {(k.worker.index, k.reason, k.force) for k in kills} == {(0, KillReason.STOPPING, True),
                                                                   (1, KillReason.STOPPING, True)}
    for w in workers:
        assert of(state.worker_exited(w, "killed by signal SIGKILL", False, clock.now), Deliver) == []
    assert state.n_queued == 2 and state.n_active == 0 and state.n_restarts == 0
