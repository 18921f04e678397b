"""The pure scheduler state machine, driven by events and a fake clock: no process, no socket, no thread.

Each test plays what a backend would report (a worker is ready, a result came, a process exited) and checks
the commands the state answers with and the counts it keeps.
"""

from __future__ import annotations

import collections
import itertools
from typing import Any

import pytest

from jobsched import JobCancelled, JobError, JobTimeout, WorkerStartupError, WorkerState
from jobsched._core.slot import Worker
from jobsched._core.snapshot import counts
from jobsched._core.state import (
    AUTO_MAX,
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
    state.finished(False)
    state.delivered()
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


# ---------------------------------------------------------------------------------------------- prefetch="auto"


HOLD_SECONDS = 200e-6  # a batching worker holds results back for at most this much work


def simulate(state: SchedulerState, w: Worker, clock: Clock, durations: list[float], round_trip: float,
             *, batch: bool = False) -> list[int]:
    """Play one worker that runs ``durations`` in order, over a link of ``round_trip`` seconds (half each way).

    Returns the depth (``state.prefetch``) after each result. With ``batch``, results reach the state in
    bunches (as when the loop reads several from one socket at once): a worker holds a result back while its
    next job is already there and the results it holds took under ``HOLD_SECONDS`` of work.
    """
    for _ in durations:
        state.add(entry())
    half = round_trip / 2
    arrivals: collections.deque[float] = collections.deque()  # when each job in flight reaches the worker

    def send() -> None:
        for s in state.assign(clock.now):
            arrivals.extend([clock.now + half] * len(s.entries))

    send()
    todo = iter(durations)
    free_at = clock.now
    depths = []
    while arrivals:
        n = 0
        held = 0.0
        while arrivals:
            d = next(todo)
            free_at = max(arrivals.popleft(), free_at) + d
            n += 1
            held += d
            if not (batch and arrivals and arrivals[0] <= free_at and held < HOLD_SECONDS):
                break
        clock.now = max(clock.now, free_at + half)
        for _ in range(n):
            finish(state, w, clock)
            depths.append(state.prefetch)
        send()
    return depths


def test_auto_prefetch_ramps_up_for_short_jobs_and_stays_under_the_cap() -> None:
    state, clock = SchedulerState(prefetch="auto"), Clock()
    (w,) = bring_up(state, clock, 1)
    depths = simulate(state, w, clock, [20e-6] * 2000, round_trip=100e-6)
    assert depths[0] == 1  # before any measurement (assign still keeps the next job at hand)
    assert max(depths) <= AUTO_MAX
    # About a millisecond of work in flight: 1 ms / 20 us = 50.
    assert 40 <= depths[-1] <= 60, depths[-20:]
    assert state.job_seconds == pytest.approx(20e-6, rel=0.2)
    assert state.round_trip == pytest.approx(100e-6, rel=0.3)


def test_auto_prefetch_never_exceeds_the_cap_for_jobs_of_no_time() -> None:
    state, clock = SchedulerState(prefetch="auto"), Clock()
    (w,) = bring_up(state, clock, 1)
    depths = simulate(state, w, clock, [1e-9] * 3000, round_trip=50e-6)
    assert max(depths) == depths[-1] == AUTO_MAX
    assert len(w._inflight) <= AUTO_MAX


def test_auto_prefetch_keeps_one_long_job_in_flight() -> None:
    state, clock = SchedulerState(prefetch="auto"), Clock()
    (w,) = bring_up(state, clock, 1)
    depths = simulate(state, w, clock, [5e-3] * 20, round_trip=100e-6)  # 50 round trips
    assert depths[-1] == 1 and set(depths[3:]) == {1}


def test_auto_prefetch_falls_to_one_when_jobs_get_long_and_ramps_up_again_when_they_get_short() -> None:
    state, clock = SchedulerState(prefetch="auto"), Clock()
    (w,) = bring_up(state, clock, 1)
    assert simulate(state, w, clock, [20e-6] * 500, round_trip=100e-6)[-1] > 20
    assert simulate(state, w, clock, [20e-3] * 60, round_trip=100e-6)[-1] == 1
    assert simulate(state, w, clock, [20e-6] * 500, round_trip=100e-6)[-1] > 20


def test_auto_prefetch_jobs_between_the_window_and_ten_round_trips_get_a_little_depth() -> None:
    state, clock = SchedulerState(prefetch="auto"), Clock()
    (w,) = bring_up(state, clock, 1)
    # 300 us jobs over a 100 us link: 3 round trips, so about ceil(1 ms / 300 us) = 4 in flight.
    assert simulate(state, w, clock, [300e-6] * 300, round_trip=100e-6)[-1] in (3, 4, 5)


def test_auto_prefetch_shares_a_batch_of_results_that_arrive_together() -> None:
    state, clock = SchedulerState(prefetch="auto"), Clock()
    (w,) = bring_up(state, clock, 1)
    simulate(state, w, clock, [20e-6] * 2000, round_trip=100e-6, batch=True)
    assert state.job_seconds == pytest.approx(20e-6, rel=0.3)


def test_auto_prefetch_lets_a_cheaper_late_job_wait_only_behind_the_jobs_already_sent() -> None:
    state, clock = SchedulerState(prefetch="auto"), Clock()
    (w,) = bring_up(state, clock, 1)
    simulate(state, w, clock, [20e-6] * 300, round_trip=100e-6)
    depth = state.prefetch
    assert depth > 20
    for _ in range(100):
        state.add(entry(5))
    (first,) = sent(state.assign(clock.now))
    assert len(first[1]) == depth
    cheap = entry(-1)
    state.add(cheap)
    finish(state, w, clock)
    assert sent(state.assign(clock.now)) == [(0, [cheap.index])]  # the next one sent, behind depth - 1 jobs
    assert list(w._inflight).index(cheap) == depth - 1


def test_default_prefetch_stays_one_whatever_the_durations() -> None:
    state, clock = SchedulerState(), Clock()
    (w,) = bring_up(state, clock, 1)
    assert set(simulate(state, w, clock, [1e-6] * 200, round_trip=100e-6)) == {1}
    assert state.job_seconds is None
    state.add(entry(5))
    state.add(entry(5))
    assert len(sent(state.assign(clock.now))[0][1]) == 1
    finish(state, w, clock)
    cheap = entry(0)
    state.add(cheap)  # as after_stop would: the cheapest job goes next, before the queued ones
    assert sent(state.assign(clock.now)) == [(0, [cheap.index])]


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


def test_a_worker_that_died_of_something_else_than_its_job_has_its_jobs_rerun_unblamed() -> None:
    # A local worker whose zygote died (crashed=False); its connection closed first, as a death's does.
    state, clock = SchedulerState(), Clock()
    state.add(entry(max_retries=1))
    state.add(entry(max_retries=1))
    (w,) = bring_up(state, clock, 1)
    state.assign(clock.now)
    state.connection_lost(w, clock.now)
    cmds = state.worker_exited(w, "killed with its zygote", False, clock.advance(0.1), crashed=False)
    assert of(cmds, Deliver) == [] and state.n_queued == 2, "re-queued, although max_retries=1"
    assert w.n_restarts == 0 and state.n_restarts == 0
    assert of(state.tick(clock.now), StartWorker) == [StartWorker(w)], "replaced at once"


def test_a_timeout_still_blames_the_job_of_a_worker_that_died_of_something_else() -> None:
    state, clock = SchedulerState(), Clock()
    state.add(entry(max_retries=1, timeout=1.0))
    (w,) = bring_up(state, clock, 1)
    state.assign(clock.now)
    (kill,) = of(state.tick(clock.advance(1.5)), KillWorker)
    assert kill.reason is KillReason.TIMEOUT
    (timed_out,) = of(state.worker_exited(w, "killed with its zygote", False, clock.now, crashed=False), Deliver)
    assert isinstance(timed_out.result, JobTimeout)


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


def test_a_job_counts_as_done_before_its_future_and_keeps_the_scheduler_busy_until_delivered() -> None:
    state, clock = SchedulerState(), Clock()
    state.add(entry())
    (w,) = bring_up(state, clock, 1)
    state.assign(clock.now)
    state.job_done(w, 0, clock.now)
    assert not state.is_idle(), "not idle while its future and after_stop are pending"
    state.finished(True)
    stats = counts(state, clock.now)
    assert (stats["done"], stats["failed"], stats["active"]) == (1, 1, 0), "counted before its future is resolved"
    assert not state.is_idle(), "still busy while after_stop may add jobs"
    state.delivered()
    assert state.is_idle() and (state.n_done, state.n_active) == (1, 0)


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


# ---------------------------------------------------------------------------------------------- a fresh pool


@pytest.mark.parametrize("prefetch", [4, "auto"])
def test_no_worker_gets_a_second_job_while_another_is_starting_or_idle(prefetch: int | str) -> None:
    """A fresh pool runs long calls fully parallel: depth comes only once every worker holds a job."""
    state, clock = SchedulerState(prefetch=prefetch), Clock()  # type: ignore[arg-type]
    for _ in range(12):
        state.add(entry())
    state.set_target(3)
    started = [c.worker for c in of(state.tick(clock.now), StartWorker)]
    assert len(started) == 3
    w0, w1, w2 = started
    state.worker_ready(w0, clock.now)
    assert sent(state.assign(clock.now)) == [(0, [0])]  # w1 and w2 are still starting
    state.worker_ready(w1, clock.now)
    assert sent(state.assign(clock.now)) == [(1, [1])]
    state.worker_ready(w2, clock.now)
    sends = sent(state.assign(clock.now))
    # w2 gets its first job before anyone gets a second; then every worker may hold more.
    assert sends[0][0] == 2 and sends[0][1][0] == 2
    assert all(len(w._inflight) >= 2 for w in started)
    if prefetch == 4:
        assert [len(w._inflight) for w in started] == [4, 4, 4]


def test_auto_keeps_the_next_long_job_on_each_busy_worker() -> None:
    """With jobs waiting and every worker busy, "auto" keeps one more job at each worker, even for long jobs."""
    state, clock = SchedulerState(prefetch="auto"), Clock()
    for _ in range(20):
        state.add(entry())
    workers = bring_up(state, clock, 2)
    state.assign(clock.now)
    assert [len(w._inflight) for w in workers] == [2, 2]
    for _ in range(6):  # long jobs: the measured depth is 1, and each worker still holds the next one
        clock.advance(2.0)
        for w in workers:
            finish(state, w, clock)
        state.assign(clock.now)
        assert [len(w._inflight) for w in workers] == [2, 2]
    assert state.prefetch == 1  # what it measured: long jobs go one at a time


def test_auto_gives_an_idle_worker_a_job_before_deepening_a_busy_one() -> None:
    """An idle worker (its jobs done, the queue just refilled) takes the next job, not a busy worker's queue."""
    state, clock = SchedulerState(prefetch="auto"), Clock()
    w0, w1 = bring_up(state, clock, 2)
    state.add(entry())
    assert sent(state.assign(clock.now)) == [(0, [0])]  # one job, one worker: w1 stays idle
    for _ in range(3):
        state.add(entry())
    sends = sent(state.assign(clock.now))
    assert sends[0][0] == 1 and sends[0][1][0] == 1  # the idle worker first
    assert len(w0._inflight) == 2 and len(w1._inflight) == 2


# ---------------------------------------------------------------------------------------------- retry_on

RETRY_TYPES = ("builtins.ConnectionResetError", "builtins.ConnectionError", "builtins.OSError",
               "builtins.Exception", "builtins.BaseException", "builtins.object")


def test_retry_on_requeues_a_matching_error_after_its_delay_within_the_attempt_budget() -> None:
    """A job raising a subclass of a retry_on type waits retry_delay, runs again, and fails on its last attempt."""
    clock = Clock()
    state = SchedulerState()
    state.retry_delay = 2.0
    (w,) = bring_up(state, clock, 1)
    job = entry(max_retries=2)
    job.retry_on = frozenset({"builtins.ConnectionError"})
    state.add(job)
    assert sent(state.assign(clock.now)) == [(0, [0])]
    assert state.job_done(w, 0, clock.now) is job
    assert state.job_raised(job, RETRY_TYPES, "ConnectionResetError", clock.now) is True
    assert job.attempts == 1 and state.n_active == 1 and state.n_queued == 0 and not state.is_idle()
    clock.advance(1.0)
    state.tick(clock.now)
    assert state.assign(clock.now) == []  # still waiting out its delay
    clock.advance(1.5)
    state.tick(clock.now)
    assert sent(state.assign(clock.now)) == [(0, [0])]
    assert state.job_done(w, 0, clock.now) is job
    assert state.job_raised(job, RETRY_TYPES, "ConnectionResetError", clock.now) is False  # 2 attempts used


def test_retry_on_leaves_an_error_it_does_not_name_alone() -> None:
    clock = Clock()
    state = SchedulerState()
    (w,) = bring_up(state, clock, 1)
    job = entry(max_retries=5)
    job.retry_on = frozenset({"builtins.TimeoutError"})
    state.add(job)
    state.assign(clock.now)
    state.job_done(w, 0, clock.now)
    assert state.job_raised(job, RETRY_TYPES, "ConnectionResetError", clock.now) is False
    assert job.attempts == 0


def test_retried_errors_and_deaths_share_one_attempt_budget() -> None:
    """One retried error, then a death: with max_retries=2 the death is the last attempt (WorkerDied)."""
    clock = Clock()
    state = SchedulerState()
    (w,) = bring_up(state, clock, 1)
    job = entry(max_retries=2)
    job.retry_on = frozenset({"builtins.OSError"})
    state.add(job)
    state.assign(clock.now)
    state.job_done(w, 0, clock.now)
    assert state.job_raised(job, RETRY_TYPES, "ConnectionResetError", clock.now)
    state.assign(clock.now)
    cmds = state.worker_exited(w, "killed by signal SIGKILL", False, clock.now)
    (deliver,) = of(cmds, Deliver)
    assert deliver.failed and deliver.result.remote_type == "WorkerDied" and deliver.result.attempts == 2


# ---------------------------------------------------------------------------------------------- tags, set_cost


def tagged_state(tags: dict[str, list[int]], n: int, clock: Clock) -> tuple[SchedulerState, list[Worker]]:
    from jobsched._core.tags import tags_table

    state = SchedulerState()
    state.tags_of = tags_table(tags)
    return state, bring_up(state, clock, n)


def needing(cost: float, *tags: str) -> Entry:
    e = entry(cost)
    e.needs = frozenset(tags)
    return e


def test_a_job_that_needs_a_tag_goes_only_to_a_worker_with_it_and_cost_order_holds_among_what_each_can_take() -> None:
    clock = Clock()
    state, (w0, w1) = tagged_state({"gpu": [1]}, 2, clock)
    assert (w0.tags, w1.tags) == (frozenset(), frozenset({"gpu"}))
    gpu_cheap, plain, gpu_dear = needing(0, "gpu"), entry(1), needing(5, "gpu")
    for e in (gpu_dear, plain, gpu_cheap):
        state.add(e)
    assert state.n_queued == 3
    assert sorted(sent(state.assign(clock.now))) == [(0, [plain.index]), (1, [gpu_cheap.index])]
    finish(state, w0, clock)
    assert state.assign(clock.now) == []  # worker 0 cannot take the gpu job: it waits for worker 1
    finish(state, w1, clock)
    assert sent(state.assign(clock.now)) == [(1, [gpu_dear.index])]
    finish(state, w1, clock)
    assert state.is_idle()


def test_scaling_away_the_last_worker_with_a_tag_settles_its_queued_jobs_with_an_error() -> None:
    clock = Clock()
    state, _ = tagged_state({"gpu": [1]}, 2, clock)
    waiting, other = needing(0, "gpu"), entry(0)
    state.paused = True  # nothing is sent
    state.add(waiting)
    state.add(other)
    state.set_target(1)
    (settled,) = list(state.ready)
    assert settled.entry is waiting and settled.failed
    assert settled.result.remote_type == "NoWorkerWithTags" and "gpu" in settled.result.remote_message
    assert state.n_queued == 1 and not waiting.queued


def test_set_cost_moves_a_queued_job_and_refuses_one_already_sent() -> None:
    state, clock = SchedulerState(), Clock()
    jobs = [entry(c) for c in (1, 2, 3)]
    for e in jobs:
        state.add(e)
    assert state.set_cost(jobs[2], 0)
    assert jobs[2].cost == 0
    (w,) = bring_up(state, clock, 1)
    assert sent(state.assign(clock.now)) == [(0, [jobs[2].index])]
    assert not state.set_cost(jobs[2], 9)  # sent: it keeps its place
    assert state.set_cost(jobs[0], 5)
    finish(state, w, clock)
    assert sent(state.assign(clock.now)) == [(0, [jobs[1].index])]
