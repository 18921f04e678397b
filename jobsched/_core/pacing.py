"""``prefetch="auto"``: how many jobs to keep in flight per worker, learnt from job durations and round trips.

Pure arithmetic on the times the state measures (``SchedulerState._time_result``): no clock, no I/O. The aim
is to hide the round trip for tiny jobs, keeping about ``AUTO_WINDOW`` seconds of work (or two round trips)
in flight per worker, while long jobs go one at a time so that nothing waits behind them. It starts at one job
per worker and deepens only from measurements; ``SchedulerState.assign`` adds the rules that do not depend on
them: no worker gets a second job while another is idle or starting, and once every worker is busy and jobs
wait, each keeps its next job at hand (so that a worker never waits a round trip between two jobs).
"""

from __future__ import annotations

import math

# prefetch="auto": keep about AUTO_WINDOW seconds of work (or two round trips, if longer) in flight per worker.
AUTO_START = 1  # jobs in flight per worker until the first measurements (SchedulerState.assign keeps a 2nd)
AUTO_MAX = 256  # never more in flight per worker
AUTO_WINDOW = 1e-3
AUTO_LONG = 10.0  # a job longer than this many round trips runs alone: nothing waits behind it
AUTO_SMOOTHING = 0.2  # weight of a new measurement in the moving averages
MIN_ROUND_TRIP = 10e-6  # below any real round trip: a noisy estimate never reaches 0


class AutoDepth:
    """Moving averages of a job's duration and of the round trip, and the depth they call for."""

    def __init__(self) -> None:
        self.job_seconds: float | None = None  # moving average of a job's duration in a worker
        self.round_trip: float | None = None  # moving average of send -> result, minus the job
        self._first_span: tuple[float, int] | None = None  # (seconds, results) of the first span

    def measure(self, seconds: float, n: int, pipelined: bool, depth: int) -> int:
        """Learn from ``n`` results that took ``seconds``; return the depth ``prefetch="auto"`` wants now.

        A *pipelined* span began when the previous result came, with the next job already at the worker: it
        is ``n`` job durations. Otherwise the worker was idle when its first job was sent: the span is one
        round trip plus ``n`` durations. The first pipelined span gives the duration and, with the first span
        of all, the round trip. Until then the duration is over-estimated as ``seconds / n``: the depth still
        grows, and the round trip's share of each job shrinks as it does. Then, with several jobs in flight,
        pipelined spans keep the duration up to date and the others the round trip; with one in flight (long
        jobs) every span is of the second kind, and the known round trip is taken out of it.
        """
        a = AUTO_SMOOTHING
        dur, rtt = self.job_seconds, self.round_trip
        if pipelined:
            sample = seconds / n
            if dur is None or rtt is None:  # the first true duration replaces the upper bound
                dur = sample
                first = self._first_span
                if first is not None:
                    rtt = max(first[0] - first[1] * dur, MIN_ROUND_TRIP)
            else:
                dur += a * (sample - dur)
        elif rtt is None or dur is None:  # no pipelined span yet: an upper bound of the duration
            if self._first_span is None:
                self._first_span = (seconds, n)
            sample = seconds / n
            dur = sample if dur is None else dur + a * (sample - dur)
        elif depth > 1:
            rtt += a * (max(seconds - n * dur, MIN_ROUND_TRIP) - rtt)
        else:
            dur += a * (max(seconds - rtt, 0.0) / n - dur)
        self.job_seconds, self.round_trip = dur, rtt
        if rtt is None:  # both upper bounds: the first span holds a round trip at most
            first = self._first_span
            window = max(AUTO_WINDOW, 2.0 * first[0]) if first is not None else AUTO_WINDOW
            return min(AUTO_MAX, max(AUTO_START, math.ceil(window / max(dur, 1e-9))))
        elif dur > AUTO_LONG * rtt:
            return 1
        else:
            window = max(AUTO_WINDOW, 2.0 * rtt)
            return min(AUTO_MAX, max(1, math.ceil(window / max(dur, 1e-9))))
