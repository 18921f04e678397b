"""The task timeline: which worker ran which job, when, and how it ended; and its SVG drawing.

Owns the recorder (``recorder``) and the drawing (``svg``), plain data and text that the dashboard,
the journal's report and ``Scheduler.timeline()`` share.

May import: the public vocabulary and ``_core`` for types. Never imports a backend, the journal or the
notebook layer.
"""
