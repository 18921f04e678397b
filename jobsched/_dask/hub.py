# distributed's public API is largely unannotated; its calls are checked at run time by the tests.
# mypy: disable-error-code="no-untyped-call"
"""Cluster events for the per-task mode: one subscription to a client's "all" topic, shared by its backends.

A backend (``jobsched.dask.DaskBackend``) joins its client's hub (``hub_for(client).add(backend)``) to learn of
Dask workers that join or leave; the hub calls each backend's ``_on_event`` on the client's IO loop.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import distributed

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..dask import DaskBackend

class Hub:
    """One subscription to a client's "all" event topic, shared by every backend on that client.

    ``Client.subscribe_topic`` keeps one handler per topic, so two schedulers on one client (or a handler of
    the user's) would replace each other; the hub calls each of them.
    """

    def __init__(self, client: distributed.Client) -> None:
        self.client = client
        self.backends: set[DaskBackend] = set()
        self.lock = threading.Lock()
        self.previous: Callable[[Any], Any] | None = None

    def add(self, backend: DaskBackend) -> None:
        with self.lock:
            first = not self.backends
            self.backends.add(backend)
        if first:
            handlers = getattr(self.client, "_event_handlers", {})
            self.previous = handlers.get("all")
            self.client.subscribe_topic("all", self.handle)

    def discard(self, backend: DaskBackend) -> None:
        with self.lock:
            self.backends.discard(backend)
            last = not self.backends
        if last:
            with _hubs_lock:
                _hubs.pop(self.client.id, None)
            if self.client.status not in ("running", "connecting"):
                return
            try:
                if self.previous is not None:
                    self.client.subscribe_topic("all", self.previous)
                else:
                    # Unsubscribe, or the scheduler keeps sending events to this client; the client keeps
                    # the handler after unsubscribing, so drop it too (a later hub must not chain to it).
                    self.client.unsubscribe_topic("all")
                    handlers = getattr(self.client, "_event_handlers", {})
                    if handlers.get("all") == self.handle:
                        del handlers["all"]
            except Exception:
                pass

    def handle(self, event: Any) -> Any:
        with self.lock:
            backends = list(self.backends)
        for backend in backends:
            backend._on_event(event)
        return self.previous(event) if self.previous is not None else None


_hubs: dict[str, Hub] = {}
_hubs_lock = threading.Lock()


def hub_for(client: distributed.Client) -> Hub:
    with _hubs_lock:
        hub = _hubs.get(client.id)
        if hub is None:
            hub = _hubs[client.id] = Hub(client)
        return hub
