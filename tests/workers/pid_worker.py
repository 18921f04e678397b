"""A worker file: returns (pid, data); after the scheduler closes it, writes a marker file (argv[1])."""

import os
import sys

from jobsched import start_simple_worker


def run(data):
    return (os.getpid(), data)


def worker():
    start_simple_worker(run)
    # Runs only after server_close: the worker's own clean-up.
    if len(sys.argv) > 1:
        with open(os.path.join(sys.argv[1], f"closed-{os.getpid()}"), "w") as f:
            f.write("bye")


if __name__ == "__main__":
    raise SystemExit("this block must not run in a worker")
