"""What ``benchmarks/run.py`` measures: the scenarios, the peers, their sizes, and who takes part where.

The names and one-line descriptions below are what ``python benchmarks/run.py --help`` lists. Every
peer runs in its own child process (``child.py`` / ``peers.py``); memory scenarios get a fresh child per
run. Sizes are those of a full run (``Sizes``); ``--quick`` shrinks them (``Sizes.quick``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A trivial job is x -> x + 1, one job per task; 2 workers unless said. Plain text: --help prints these.
SCENARIO_HELP = {
    "throughput": "jobs/s, 20,000 trivial jobs submitted at once, warm pool",
    "roundtrip": "median and p99 time of one job, submit to result, warm pool",
    "cold_start": "creating the pool to the first result",
    "efficiency": "200 jobs of time.sleep(0.01): ideal time (1 s) / measured",
    "scale": "120 workers x 2,000 jobs: pool creation to last result",
    "many": "100,000 jobs on 8 workers, all counted; peak RSS",
    "queue_memory": "scheduler RSS per queued job, 1,000,000 jobs (not run)",
    "executor_map": "Executor.map vs ProcessPoolExecutor.map, 100,000 items",
    "dashboard": "throughput with sched.dashboard() attached vs without",
    "journal": "jobs/s with a journal vs without, bytes per job",
    "payload": "arrays of 1 KiB, 1 MiB, 100 MiB there and back vs one memcpy",
    "shm_threshold": "16 KiB to 8 MiB arrays, shared memory forced on vs off",
    "shared_data": "200 MiB put() once, given to 1,000 jobs; PSS; Dask scatter",
    "cluster": "tiny jobs on a LocalCluster: resident, per-task, Dask itself",
}
PEER_HELP = {
    "floor1": "raw TCP ping-pong, 1 job in flight per worker",
    "floor2": "raw TCP ping-pong, 2 jobs in flight per worker",
    "jobsched": "Scheduler.submit futures (default, prefetch=1)",
    "jobsched_prefetch2": "Scheduler.submit futures, prefetch=2",
    "jobsched_auto": "Scheduler.submit futures, prefetch=\"auto\"",
    "jobsched_manual": "add_job, then start(after_stop=...)",
    "jobsched_manual_prefetch2": "add_job, then start(after_stop=...), prefetch=2",
    "jobsched_manual_auto": "add_job + start(after_stop=...), prefetch=\"auto\"",
    "ppe_fork": "concurrent.futures.ProcessPoolExecutor, fork",
    "ppe_spawn": "concurrent.futures.ProcessPoolExecutor, spawn",
    "mp_pool": "multiprocessing.Pool.imap_unordered, fork",
    "loky": "loky.ProcessPoolExecutor (if installed)",
    "dask": "dask.distributed LocalCluster (if installed)",
}
SCENARIOS = list(SCENARIO_HELP)
PEERS = list(PEER_HELP)
# Where the manual's add_job + start loop is measured too.
MANUAL_SCENARIOS = {"throughput", "roundtrip", "efficiency", "many", "payload"}
# Once, not per peer (shared_data and cluster compare Dask inside their one measurement).
JOBSCHED_ONLY = {"queue_memory", "executor_map", "dashboard", "journal", "shm_threshold", "shared_data", "cluster"}
# A fresh child per run: they report this process's peak memory, or import numpy (a child that goes on to
# fork pools for other scenarios must not carry numpy into every forked worker).
FRESH_PROCESS = {"many", "queue_memory", "executor_map", "payload", "shm_threshold", "shared_data", "cluster"}
# Who sends arrays in the payload scenario: the issue's peers (the raw floors' workers do x + 1 only).
PAYLOAD_PEERS = {"jobsched", "jobsched_manual", "ppe_fork", "loky", "mp_pool"}

LABELS = {
    "floor1": "raw TCP floor, 1 in flight/worker",
    "floor2": "raw TCP floor, 2 in flight/worker",
    "jobsched": "jobsched submit (default, prefetch=1)",
    "jobsched_prefetch2": "jobsched submit, prefetch=2",
    "jobsched_manual": "jobsched add_job + after_stop (default)",
    "jobsched_manual_prefetch2": "jobsched add_job + after_stop, prefetch=2",
    "jobsched_auto": "jobsched submit, prefetch=\"auto\"",
    "jobsched_manual_auto": "jobsched add_job + after_stop, prefetch=\"auto\"",
    "ppe_fork": "ProcessPoolExecutor fork",
    "ppe_spawn": "ProcessPoolExecutor spawn",
    "mp_pool": "multiprocessing.Pool.imap_unordered",
    "loky": "loky",
    "dask": "dask.distributed LocalCluster",
}

# --baseline PATH: another checkout of jobsched (at PATH) measured in the same run, as these peers under
# the name BASE + peer, for the targets that say "no slower than today".
BASE = "base_"
BASELINE_PEERS = ("jobsched", "jobsched_manual")


def label(peer: str) -> str:
    """The table's name for a peer."""
    if peer.startswith(BASE):
        return "baseline: " + LABELS.get(peer.removeprefix(BASE), peer)
    return LABELS.get(peer, peer)


@dataclass
class Sizes:
    """How big each scenario is; ``--quick`` shrinks them all."""

    workers: int = 2
    throughput_n: int = 20_000
    roundtrip_n: int = 2_000
    efficiency_n: int = 200
    efficiency_sleep: float = 0.01
    scale_workers: int = 120
    scale_n: int = 2_000
    many_workers: int = 8
    many_n: int = 100_000
    queue_n: int = 1_000_000
    map_n: int = 100_000
    dashboard_n: int = 20_000
    dashboard_pairs: int = 6  # alternating runs without / with a dashboard, in one child process
    journal_n: int = 20_000
    journal_pairs: int = 4  # alternating runs without / with a journal, in one child process
    journal_records: int = 100_000  # records read back by Journal.results()
    payload_big: int = 100 << 20  # bytes: the largest array of the payload scenario (besides 1 KiB and 1 MiB)
    payload_n: int = 200  # round trips per repeat of the 1 KiB and 1 MiB arrays
    payload_big_n: int = 7  # round trips per repeat of the largest array
    shm_budget_mb: float = 64.0  # payload per size and mode in shm_threshold (10 to 400 round trips)
    shm_blocks: int = 4  # alternating blocks of shm on / off per size
    shared_n: int = 1_000  # jobs reading the array of the shared_data scenario
    shared_mb: int = 200  # its size
    cluster_n: int = 50_000  # tiny jobs on resident workers in the cluster scenario
    cluster_task_n: int = 2_000  # the same per task, and as Dask's own tasks (some 600 a second)
    cluster_rt_n: int = 200  # round trips timed in each mode
    shm_sizes: list[int] = field(default_factory=lambda: [16 << 10, 64 << 10, 128 << 10, 160 << 10, 192 << 10,
                                                          256 << 10, 384 << 10, 512 << 10, 1 << 20, 2 << 20,
                                                          4 << 20, 8 << 20])
    # Slow peers get fewer jobs where a rate or a median is measured (neither depends on N once N is large).
    slow_peer_n: dict[str, int] = field(default_factory=lambda: {"dask": 5_000})
    slow_peer_roundtrip_n: dict[str, int] = field(default_factory=lambda: {"dask": 200})

    @classmethod
    def quick(cls) -> Sizes:
        return cls(throughput_n=5_000, roundtrip_n=300, efficiency_n=60, scale_workers=16, scale_n=1_000,
                   many_n=20_000, queue_n=100_000, map_n=10_000, dashboard_n=5_000,
                   dashboard_pairs=2, journal_n=5_000, journal_pairs=1, journal_records=10_000,
                   payload_big=16 << 20, payload_n=40, payload_big_n=3, shm_budget_mb=16.0, shm_blocks=2,
                   shared_n=200, shared_mb=32, cluster_n=10_000, cluster_task_n=500, cluster_rt_n=50,
                   slow_peer_n={"dask": 500}, slow_peer_roundtrip_n={"dask": 50})


def size_label(size: int) -> str:
    """``1024`` -> ``"1KiB"``, ``100 << 20`` -> ``"100MiB"``: the keys of the payload scenarios' results."""
    for shift, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return f"{size}B"


def params_for(scenario: str, peer: str, sizes: Sizes) -> dict[str, Any] | None:
    """The child's parameters for one measurement, or None if this peer does not take part."""
    slow = sizes.slow_peer_n.get(peer)
    w = sizes.workers
    if peer.startswith("jobsched_manual") and scenario not in MANUAL_SCENARIOS:
        return None  # the rest measures the same machinery as the submit peers
    if scenario == "throughput":
        return {"workers": w, "n": min(sizes.throughput_n, slow or sizes.throughput_n)}
    if scenario == "roundtrip":
        return {"workers": w, "n": min(sizes.roundtrip_n, sizes.slow_peer_roundtrip_n.get(peer, sizes.roundtrip_n))}
    if scenario == "cold_start":
        return {"workers": w}
    if scenario == "efficiency":
        return {"workers": w, "n": sizes.efficiency_n, "sleep_s": sizes.efficiency_sleep}
    if scenario == "scale":
        if peer in ("dask", "floor2", "jobsched_prefetch2", "jobsched_auto"):
            return None  # dask: 120 nannies + workers do not fit a small machine; the others add nothing
        return {"workers": sizes.scale_workers, "n": sizes.scale_n}
    if scenario == "many":
        if peer not in ("floor1", "jobsched", "jobsched_manual", "ppe_fork", "mp_pool"):
            return None  # the others add machinery already in the table, or minutes
        return {"workers": sizes.many_workers, "n": sizes.many_n}
    if scenario == "queue_memory":
        # submit() futures weigh some 2.5 kB each (the Future itself, mostly): 200,000 of them tell the same
        # bytes per job as a million, in a fifth of the time.
        return {"n": sizes.queue_n if peer == "add_job" else min(sizes.queue_n, 200_000), "kind": peer}
    if scenario == "executor_map":
        return {"n": sizes.map_n, "workers": w}
    if scenario == "dashboard":
        return {"workers": w, "n": sizes.dashboard_n, "reps": sizes.dashboard_pairs}
    if scenario == "journal":
        return {"workers": w, "n": sizes.journal_n, "reps": sizes.journal_pairs, "records": sizes.journal_records}
    if scenario == "payload":
        if peer not in PAYLOAD_PEERS:
            return None
        sizes_b = [1 << 10, 1 << 20, sizes.payload_big]
        return {"workers": w, "sizes": sizes_b, "rounds": [sizes.payload_n, sizes.payload_n, sizes.payload_big_n]}
    if scenario == "shm_threshold":
        return {"sizes": list(sizes.shm_sizes), "budget_mb": sizes.shm_budget_mb, "blocks": sizes.shm_blocks}
    if scenario == "shared_data":
        return {"workers": w, "n": sizes.shared_n, "size_mb": sizes.shared_mb}
    if scenario == "cluster":
        return {"workers": w, "n": sizes.cluster_n, "n_task": sizes.cluster_task_n, "rt_n": sizes.cluster_rt_n}
    raise ValueError(scenario)
