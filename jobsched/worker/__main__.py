"""``python -m jobsched.worker``: the default worker, which runs remote calls (or a worker file)."""

from jobsched.worker import main

main()
