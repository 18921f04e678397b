"""The scheduler's core: the pure policy and the thin shell that carries it out.

Owns the state machine (``state``: events in, ``instructions`` out, no I/O), worker slots (``slot``),
``prefetch="auto"`` pacing (``pacing``), the event loop (``loop``), the thread that owns a scheduler
(``owner``), the one way a job enters (``intake``), job futures (``futures``), snapshots for the views
(``snapshot``) and the disjoint outcome counts they show (``outcomes``), the ``Backend`` protocol that
backends implement (``backend``), Ctrl-C handling (``interrupt``), argument checks (``checks``) and
terminal progress bars (``bars``).

May import: the public vocabulary (``errors``, ``states``, ``job``, ``remote_call``), ``_data`` and
``_keys``. Never imports a backend (``_local``, ``dask``), the journal (``_journaling``, ``journal``),
the timeline (``_timeline``) or the notebook layer, except for type checking.
"""
