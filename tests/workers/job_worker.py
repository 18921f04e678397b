"""A worker file using start_worker: returns the job's index, cost and data; prints a lot on demand."""

from jobsched import start_worker


def run_job(job):
    if job.data == "print":
        for i in range(20000):
            print("line", i, "x" * 80)
    return (job.index, job.cost, job.data)


def worker():
    start_worker(run_job)


def quiet_worker():
    start_worker(lambda job: print("hidden") or job.data, silent=True)
