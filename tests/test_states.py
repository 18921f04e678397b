"""The worker lifecycle: every allowed and every forbidden transition."""

from __future__ import annotations

import itertools

import pytest

from jobsched import InvalidStateError, Worker, WorkerState

S = WorkerState
ALLOWED = {
    (S.STARTING, S.READY), (S.STARTING, S.CLOSING), (S.STARTING, S.CLOSED),
    (S.READY, S.RUNNING), (S.READY, S.CLOSING), (S.READY, S.CLOSED),
    (S.RUNNING, S.READY), (S.RUNNING, S.CLOSING), (S.RUNNING, S.CLOSED),
    (S.CLOSING, S.CLOSED),
    (S.CLOSED, S.STARTING),
}


@pytest.mark.parametrize(("old", "new"), list(itertools.product(S, S)))
def test_transition(old: WorkerState, new: WorkerState) -> None:
    w = Worker(5)
    w.state = old  # set up the precondition directly; _move() is the only setter in the package
    if (old, new) in ALLOWED:
        w._move(new)
        assert w.state is new
    else:
        with pytest.raises(InvalidStateError, match=f"worker 5: {old.name} -> {new.name}"):
            w._move(new)
        assert w.state is old
