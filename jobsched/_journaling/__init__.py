"""The journal's machinery behind ``jobsched.journal``: the SQLite file, its writer, resume, the report.

Owns the file and its checks (``file``), the batched writer (``writer``), the cancelled-jobs table
(``cancels``), the scheduler's side of ``journal=PATH`` (``resume``) and the HTML report of a run
(``report``).

May import: ``_core`` for types, ``_data``, ``_keys``, ``_timeline`` (the report draws timelines) and
the public vocabulary. Never imports a backend or the notebook layer.
"""
