"""The Dask backend's private parts; ``jobsched.dask`` is its public face.

``resident``: resident jobsched workers that Dask places and that connect back to the scheduler over TLS.
May import: ``distributed`` (only ever through ``jobsched.dask``), ``_core``, ``_data``, ``_local`` and
``worker``.
"""
