"""The notebook front end of jobsched: the ``%jobsched`` magics and the live dashboard widget.

This package is the import boundary of the notebook stack: IPython and ipywidgets are imported only by
its modules ``magics`` and ``dashboard``, and only when ``%load_ext jobsched``, ``sched.dashboard()`` or
``display(sched)`` asks for them. ``jobsched`` itself and worker processes never import them, so this
file imports nothing.
"""
