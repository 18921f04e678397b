# distributed's public API is largely unannotated; its calls are checked at run time by the tests.
# mypy: disable-error-code="no-untyped-call"
"""``put`` per task on Dask: the data goes once to each Dask worker, which holds it for the jobs that take it.

``Shared`` keeps one ``client.scatter(obj, workers=[address])`` future per Dask worker: scattered to every
worker at ``put``, and to a worker that joins later before its first job that takes the handle. Each job that
takes the handle is pinned to its slot's Dask worker and gets that worker's future among its arguments: Dask
hands ``run_payload`` the object that the worker holds (unpickled once, when it arrived), no transfer and no
copy; ``_data.handles.lent`` makes the job's handle resolve to it.

Why one key per worker rather than ``scatter(broadcast=True)``: Dask's active memory manager drops the extra
replicas of a key that no task waits for (``ReduceReplicas``, every 2 s), so a broadcast object would travel
and be unpickled again and again between jobs; a key held by one worker only is left alone. (Dask's
``replicate`` also publishes an event that its clients subscribed to cluster events cannot decode.)
"""

from __future__ import annotations

import uuid
from typing import Any

import distributed


class Shared:
    """The Dask futures of one handle's object, one per Dask worker (``_data.handles.held`` of the handle)."""

    def __init__(self, client: distributed.Client, obj: Any) -> None:
        self._client = client
        self._obj = obj  # kept for the Dask workers that join later
        self._futures: dict[str, distributed.Future[Any]] = {}

    def scatter_to_all(self) -> None:
        """Send the object to every Dask worker now (``put``)."""
        for address in self._client.nthreads():
            self.future_for(address)

    def future_for(self, address: str) -> distributed.Future[Any]:
        """The future of the copy on Dask worker ``address``, scattered there first if it has none."""
        future = self._futures.get(address)
        if future is None or future.status in ("cancelled", "lost", "error"):
            key = f"jobsched-put-{uuid.uuid4().hex}"  # a dict: a list or tuple would be scattered item by item
            future = self._futures[address] = self._client.scatter({key: self._obj}, workers=[address])[key]
        return future

    @property
    def keys(self) -> dict[str, str]:
        """Dask worker address -> the Dask key of its copy."""
        return {address: str(future.key) for address, future in self._futures.items()}

    def release(self) -> None:
        """Let go of every copy: the Dask workers forget them (``handle.release()``, its GC, ``close()``)."""
        futures, self._futures, self._obj = list(self._futures.values()), {}, None
        for future in futures:
            future.release()
