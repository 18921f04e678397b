"""The local backend: each worker slot is a Python process on this machine with its own TCP connection.

Owns the backend itself (``backend``), the scheduler's end of the wire (``transport``), the wire
protocol both ends speak (``wire``), worker processes and their reaping (``processes``), what workers
print (``output``) and the zygote that forks new workers (``zygote``, ``zygote_process``).

May import: ``_core`` (whose ``Backend`` protocol it implements), ``_data`` and the public vocabulary.
Never imports the journal, the timeline or the notebook layer.
"""
