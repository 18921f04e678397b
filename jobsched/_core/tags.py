"""Worker tags and the jobs that need them: one heap per set of needed tags, and the dispatch that honours them.

A worker slot may carry tags (``Scheduler(worker_tags=...)``, e.g. ``{"gpu": [0, 1]}``), and a job may need
some (``submit(..., needs="gpu")``). A job that needs nothing waits in the state's main heap, as always; a
job that needs tags waits in the heap of its set of tags here. A worker takes, among the heads of the heaps
whose tags it has (the main heap always), the lowest ``(cost, index)``: cost order holds among the jobs a
worker can take. While no job needs a tag, ``SchedulerState.assign`` never comes here: its loop is unchanged.

Pure policy, as ``_core.state``: no I/O, called under the scheduler's lock.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import JobError
from ..states import WorkerState
from .instructions import SendJobs

if TYPE_CHECKING:
    from .dispatch import Dispatch
    from .instructions import Entry
    from .slot import Worker

Item = tuple[float, int, "Entry"]
WorkerTags = Mapping[str, Iterable[int]] | Callable[[int], Iterable[str]]

_READY, _RUNNING = WorkerState.READY, WorkerState.RUNNING
NO_WORKER = "NoWorkerWithTags"  # the remote_type of a job that no worker can take any more


def parse_needs(needs: object, what: str = "submit") -> frozenset[str] | None:
    """Return the tags a job needs as a frozenset (None: none), from a str or an iterable of str.

    Raises:
        TypeError: ``needs`` is not a str or an iterable of str.
    """
    if needs is None:
        return None
    tags: Any = (needs,) if isinstance(needs, str) else needs
    try:
        out: frozenset[Any] = frozenset(tags)
    except TypeError:
        out = frozenset({0})
    if not out or not all(isinstance(t, str) and t for t in out):
        raise TypeError(f"{what}: needs={needs!r} must be a tag (a non-empty str) or a list of tags, "
                        "e.g. needs=\"gpu\"")
    return out


def tags_table(worker_tags: WorkerTags | None) -> Callable[[int], frozenset[str]] | None:
    """Turn ``worker_tags=`` into ``slot index -> frozenset of tags`` (None: no worker has tags).

    Raises:
        TypeError: ``worker_tags`` is neither a mapping ``tag -> slot indices`` nor a callable.
    """
    if worker_tags is None:
        return None
    if callable(worker_tags):
        fn = worker_tags

        def of(index: int) -> frozenset[str]:
            tags = fn(index)
            return frozenset((tags,) if isinstance(tags, str) else tags or ())

        return of
    if not isinstance(worker_tags, Mapping):
        raise TypeError(f"Scheduler: worker_tags must be a mapping tag -> worker indices (e.g. {{'gpu': [0, 1]}}) "
                        f"or a callable index -> tags, got {type(worker_tags).__name__}")
    table: dict[int, set[str]] = {}
    for tag, indices in worker_tags.items():
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"Scheduler: worker_tags has the tag {tag!r}; tags are non-empty strings")
        try:
            listed = list(indices)
        except TypeError:
            raise TypeError(f"Scheduler: worker_tags[{tag!r}] = {indices!r} must list worker indices, "
                            "e.g. [0, 1]") from None
        for i in listed:
            if not isinstance(i, int) or isinstance(i, bool) or i < 0:
                raise TypeError(f"Scheduler: worker_tags[{tag!r}] holds {i!r}; worker indices are ints >= 0")
            table.setdefault(i, set()).add(tag)
    frozen = {i: frozenset(tags) for i, tags in table.items()}
    empty: frozenset[str] = frozenset()
    return lambda index: frozen.get(index, empty)


def describe(tags_by_slot: Sequence[frozenset[str]]) -> str:
    """The tags the slots have, for an error message: "gpu (workers 0, 1), big (worker 2)" or "none"."""
    where: dict[str, list[int]] = {}
    for index, tags in enumerate(tags_by_slot):
        for tag in sorted(tags):
            where.setdefault(tag, []).append(index)
    if not where:
        return "none"
    return ", ".join(f"{tag} (worker{'s' if len(ix) > 1 else ''} {', '.join(map(str, ix))})"
                     for tag, ix in sorted(where.items()))


def unsatisfied(needs: frozenset[str], tags_by_slot: Sequence[frozenset[str]]) -> str | None:
    """Why no slot can run a job that needs ``needs`` (None if one can)."""
    if any(needs <= tags for tags in tags_by_slot):
        return None
    return (f"no worker has the tag{'s' if len(needs) > 1 else ''} {', '.join(sorted(needs))}; "
            f"the tags that exist: {describe(tags_by_slot)}")


class TagQueues:
    """The queued jobs that need tags: a heap by ``(cost, index)`` per set of tags, and their count."""

    __slots__ = ("heaps", "n")

    def __init__(self) -> None:
        self.heaps: dict[frozenset[str], list[Item]] = {}
        self.n = 0  # items in all heaps, cancelled ones included (as the main heap counts them)

    def push(self, entry: Entry) -> bool:
        """Queue ``entry`` in its tags' heap; return whether that heap was empty."""
        assert entry.needs is not None
        heap = self.heaps.setdefault(entry.needs, [])
        heapq.heappush(heap, (entry.cost, entry.index, entry))
        self.n += 1
        return len(heap) == 1

    def items(self, main: list[Item]) -> Iterator[Item]:
        """Every queued item: ``main``'s, then the tagged heaps'."""
        yield from main
        for heap in self.heaps.values():
            yield from heap

    def recount(self) -> None:
        self.n = sum(len(heap) for heap in self.heaps.values())

    def take_orphans(self, slots: Sequence[Worker]) -> tuple[list[tuple[Entry, JobError]], int]:
        """Take out the jobs that none of ``slots`` can run, each with its error; and the cancelled ones dropped."""
        tags_by_slot = [w.tags for w in slots]
        out: list[tuple[Entry, JobError]] = []
        n_cancelled = 0
        for needs in [needs for needs in self.heaps if unsatisfied(needs, tags_by_slot) is not None]:
            why = unsatisfied(needs, tags_by_slot)
            for _, _, entry in sorted(self.heaps.pop(needs)):
                self.n -= 1
                entry.queued = False
                if entry.cancelled:
                    n_cancelled += 1
                    continue
                out.append((entry, JobError(NO_WORKER, f"the job needs {', '.join(sorted(needs))}, but {why} "
                                            "(after scale() or start() with fewer workers)", "", entry.index)))
        return out, n_cancelled

    def pop_for(self, state: Dispatch, tags: frozenset[str]) -> Entry | None:
        """Pop the lowest ``(cost, index)`` job that a worker with ``tags`` may run (None: there is none).

        Cancelled jobs at the heads are dropped on the way, as ``assign`` drops them.
        """
        best: list[Item] | None = None
        for heap in (state.heap, *(h for needs, h in self.heaps.items() if needs <= tags)):
            while heap and heap[0][2].cancelled:
                heapq.heappop(heap)[2].queued = False
                state.n_cancelled_queued -= 1
                if heap is not state.heap:
                    self.n -= 1
            if heap and (best is None or heap[0][:2] < best[0][:2]):
                best = heap
        if best is None:
            return None
        entry = heapq.heappop(best)[2]
        if best is not state.heap:
            self.n -= 1
        entry.queued = False
        return entry


def assign_tagged(state: Dispatch, now: float, limit: int | None) -> list[SendJobs]:
    """``SchedulerState.assign`` while some queued job needs tags: each worker takes what its tags allow.

    A worker that can take none of the queued jobs stays hungry, for the next job it can take.
    """
    out: list[SendJobs] = []
    n = 0
    for w in list(state.hungry):
        if state.paused or state.closing or state.stopped_on is not None:
            break
        if w._retiring or (w.state is not _READY and w.state is not _RUNNING):
            state._unhunger(w)
            continue
        inflight = w._inflight
        batch: list[Entry] = []
        while len(inflight) < state.prefetch and (limit is None or n < limit):
            entry = state.tagged.pop_for(state, w.tags)
            if entry is None:
                break
            state.hand(w, entry, now)
            batch.append(entry)
            n += 1
        if batch:
            out.append(SendJobs(w, batch))
        if len(inflight) >= state.prefetch:
            state._unhunger(w)
        if limit is not None and n >= limit:
            break
    return out


