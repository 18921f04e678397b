"""A job's data on its way to and from a worker: pickling, and large buffers through shared memory.

Owns the one serialisation policy (``pickling``) and out-of-band buffers in ``/dev/shm`` (``shm``).

May import: the standard library, cloudpickle and ``errors`` only: both the scheduler and every worker
import it.
"""
