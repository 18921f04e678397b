"""The Dask backend's private parts; ``jobsched.dask`` is its public face.

``pertask``: the per-task mode's job step on a Dask worker (``run_payload``) and its slot records.
``shared``: ``put`` per task: one scattered copy of the data per Dask worker.
``hub``: one subscription per client to the cluster's worker events, shared by that client's backends.
``resident``: resident jobsched workers that Dask places and that connect back to the scheduler over TLS.
May import: ``distributed`` (only ever through ``jobsched.dask``), ``_core``, ``_data``, ``_local`` and
``worker``.
"""
