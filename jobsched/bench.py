"""``python -m jobsched.bench``: jobsched against its peers, side by side, in one run.

Every number is a ratio waiting to happen: the machine may be shared and noisy, so jobsched is compared
with peers measured in the same run, and each number is the median of ``--repeat`` runs (3 by default),
the repeats interleaved across peers so that a burst of noise does not land on one peer only.

Scenarios (2 workers unless said; a trivial job is ``x -> x + 1``, one job per task):

==============  ====================================================================================
throughput      jobs/s for N trivial jobs submitted at once on a warm pool (N = 20,000)
roundtrip       median and p99 time of one job, submit to result, one at a time on a warm pool
cold_start      creating the pool to the first result
efficiency      200 jobs of ``time.sleep(0.01)``: ideal time (1.0 s) / measured time
scale           120 workers x 2,000 jobs: creating the pool to the last result (cold)
many            100,000 jobs on 8 workers, every result counted, peak RSS of the scheduler process
queue_memory    bytes of scheduler-process RSS per queued job, for 1,000,000 small jobs (not run)
executor_map    ``Executor.map`` over 100,000 items, consumed as they come: rate and peak RSS growth
dashboard       throughput with ``sched.dashboard()`` attached vs without (if the dashboard exists)
==============  ====================================================================================

Peers: the raw-socket floor (``floor1`` / ``floor2``: a minimal length-prefixed TCP ping-pong to
``python -c`` workers with 1 or 2 jobs in flight per worker), ``jobsched`` (default, ``prefetch=1``),
``jobsched_prefetch2``, ``ppe_fork`` / ``ppe_spawn`` (``ProcessPoolExecutor``), ``mp_pool``
(``multiprocessing.Pool.imap_unordered``), and ``loky`` / ``dask`` (``distributed.LocalCluster``) when
installed (``pip install 'jobsched[bench]'``). Each peer runs in its own child process
(``jobsched._bench_peers``); memory scenarios get a fresh child per run.

Usage::

    python -m jobsched.bench                       # the full run (several minutes)
    python -m jobsched.bench --quick               # smaller sizes, one repeat (about a minute)
    python -m jobsched.bench --only throughput,roundtrip --only floor1,jobsched --json out.json
    python -m jobsched.bench --quick --set throughput_n=2000      # change one size

``--only`` takes scenario and peer names (comma-separated, repeatable); a scenario or peer not named is
left out, unless no name of that kind is given.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import importlib.util
import json
import os
import platform
import selectors
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

PEERS = ["floor1", "floor2", "jobsched", "jobsched_prefetch2", "jobsched_manual", "jobsched_manual_prefetch2",
         "ppe_fork", "ppe_spawn", "mp_pool", "loky", "dask"]
# Where the manual's add_job + start loop is measured too.
MANUAL_SCENARIOS = {"throughput", "roundtrip", "efficiency", "many"}
SCENARIOS = ["throughput", "roundtrip", "cold_start", "efficiency", "scale", "many", "queue_memory",
             "executor_map", "dashboard"]
JOBSCHED_ONLY = {"queue_memory", "executor_map", "dashboard"}  # run once each, not per peer
FRESH_PROCESS = {"many", "queue_memory", "executor_map"}  # they report this process's peak memory
REQUEST_TIMEOUT = 900.0  # a peer that has not answered one measurement in 15 minutes is hung

LABELS = {
    "floor1": "raw TCP floor, 1 in flight/worker",
    "floor2": "raw TCP floor, 2 in flight/worker",
    "jobsched": "jobsched submit (default, prefetch=1)",
    "jobsched_prefetch2": "jobsched submit, prefetch=2",
    "jobsched_manual": "jobsched add_job + after_stop (default)",
    "jobsched_manual_prefetch2": "jobsched add_job + after_stop, prefetch=2",
    "ppe_fork": "ProcessPoolExecutor fork",
    "ppe_spawn": "ProcessPoolExecutor spawn",
    "mp_pool": "multiprocessing.Pool.imap_unordered",
    "loky": "loky",
    "dask": "dask.distributed LocalCluster",
}


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
    # Slow peers get fewer jobs where a rate or a median is measured (neither depends on N once N is large).
    slow_peer_n: dict[str, int] = field(default_factory=lambda: {"dask": 5_000})
    slow_peer_roundtrip_n: dict[str, int] = field(default_factory=lambda: {"dask": 200})

    @classmethod
    def quick(cls) -> Sizes:
        return cls(throughput_n=5_000, roundtrip_n=300, efficiency_n=60, scale_workers=16, scale_n=1_000,
                   many_n=20_000, queue_n=100_000, map_n=10_000, dashboard_n=5_000,
                   dashboard_pairs=2, slow_peer_n={"dask": 500}, slow_peer_roundtrip_n={"dask": 50})


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
        if peer in ("dask", "floor2", "jobsched_prefetch2"):
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
    raise ValueError(scenario)


# ---------------------------------------------------------------------------------------------- children


class Child:
    """A ``jobsched._bench_peers`` process: requests on its stdin, answers on a private pipe."""

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobsched._bench_peers"],
            stdin=subprocess.PIPE,
            stdout=write_fd,
            text=True,
            start_new_session=True,  # its own process group: a hung child is killed with its workers
        )
        os.close(write_fd)
        self.answers = os.fdopen(read_fd, "r")
        self.buffer = ""

    def request(self, peer: str, scenario: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"peer": peer, "scenario": scenario, "params": params}) + "\n")
        self.proc.stdin.flush()
        line = self._readline(timeout)
        if line is None:
            self.kill()
            return {"ok": False, "error": f"no answer within {timeout:g} s (killed)"}
        if not line:
            self.kill()
            return {"ok": False, "error": f"the child exited (code {self.proc.poll()})"}
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _readline(self, timeout: float) -> str | None:
        fd = self.answers.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while "\n" not in self.buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    return None
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return ""
                self.buffer += chunk.decode()
        line, _, self.buffer = self.buffer.partition("\n")
        return line

    def close(self, timeout: float = 60.0) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()  # EOF: the child's request loop ends
            except OSError:
                pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self.kill()  # and anything it left in its process group
        self.answers.close()

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10.0)
        except subprocess.TimeoutExpired:
            pass


# ---------------------------------------------------------------------------------------------- running


def available(peer: str) -> str | None:
    """None if the peer can run here, else why not."""
    module = {"loky": "loky", "dask": "distributed"}.get(peer)
    if module and importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install 'jobsched[bench]')"
    return None


def ensure_bytecode() -> bool:
    """Compile jobsched's modules once, as ``pip install`` does, if they are not cached yet.

    Worker start-up is part of what is measured. With ``PYTHONDONTWRITEBYTECODE`` set (or a read-only
    checkout), every jobsched worker would compile jobsched from source at each start while the peers load
    cached bytecode of the standard library: an unfair handicap that no installed package has.
    """
    package = os.path.dirname(os.path.abspath(__file__))
    return bool(compileall.compile_dir(package, quiet=2, workers=1))


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-key median of successful runs (numbers only)."""
    good = [r for r in runs if "error" not in r and "skipped" not in r]
    if not good:
        return {}
    keys = [k for k, v in good[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return {k: median(r[k] for r in good if k in r) for k in keys}


def run_all(scenarios: Sequence[str], peers: Sequence[str], sizes: Sizes, repeat: int,
            log: Any = sys.stderr) -> dict[str, dict[str, dict[str, Any]]]:
    results: dict[str, dict[str, dict[str, Any]]] = {}
    children: dict[str, Child] = {}

    def child_for(peer: str, scenario: str) -> tuple[Child, bool]:
        if scenario in FRESH_PROCESS:
            return Child(), True
        if peer not in children:
            children[peer] = Child()
        return children[peer], False

    try:
        for scenario in scenarios:
            if scenario in JOBSCHED_ONLY:
                kinds = ["add_job", "submit"] if scenario == "queue_memory" else ["jobsched"]
                todo = [(k, params_for(scenario, k, sizes)) for k in kinds]
            else:
                todo = [(p, params_for(scenario, p, sizes)) for p in peers]
            entries = results.setdefault(scenario, {})
            for name, params in todo:
                if params is None:
                    entries[name] = {"skipped": "not measured in this scenario (see jobsched.bench.params_for)"}
                elif name in PEERS and (why := available(name)):
                    entries[name] = {"skipped": why}
                else:
                    entries[name] = {"params": params, "runs": []}
            n_rep = 1 if scenario == "dashboard" else repeat
            for rep in range(n_rep):
                for name, params in todo:
                    entry = entries[name]
                    if "runs" not in entry or params is None:
                        continue
                    child, fresh = child_for(name, scenario)
                    t0 = time.monotonic()
                    peer = "jobsched" if scenario in JOBSCHED_ONLY else name
                    answer = child.request(peer, scenario, params, REQUEST_TIMEOUT)
                    if fresh:
                        child.close()
                    elif not answer.get("ok"):
                        child.close()  # it may be in a bad state: the next request gets a new one
                        children.pop(name, None)
                    run = answer["value"] if answer.get("ok") else {"error": answer.get("error", "?")}
                    entry["runs"].append(run)
                    took = time.monotonic() - t0
                    print(f"  {scenario:<13} {name:<19} run {rep + 1}/{n_rep}  {took:6.2f} s  {_brief(run)}",
                          file=log, flush=True)
                    if "error" in run and answer.get("traceback"):
                        print(answer["traceback"], file=log, flush=True)
            for entry in entries.values():
                if "runs" in entry:
                    entry["median"] = summarize(entry["runs"])
                    errors = [r["error"] for r in entry["runs"] if "error" in r]
                    if errors:
                        entry["errors"] = errors
    finally:
        for child in children.values():
            child.close()
    return results


def _brief(run: dict[str, Any]) -> str:
    if "error" in run:
        return "ERROR " + str(run["error"])[:100]
    if "skipped" in run:
        return "skipped: " + str(run["skipped"])
    shown = []
    for k in ("jobs_per_s", "median_us", "p99_us", "seconds", "efficiency", "peak_rss_mb", "bytes_per_job",
              "items_per_s", "growth_mb", "cost"):
        if k in run:
            shown.append(f"{k}={run[k]:.4g}")
    return " ".join(shown)


# ---------------------------------------------------------------------------------------------- targets


def _get(results: dict[str, Any], scenario: str, peer: str, key: str) -> float | None:
    value = results.get(scenario, {}).get(peer, {}).get("median", {}).get(key)
    return float(value) if value is not None else None


def evaluate(results: dict[str, Any], sizes: Sizes) -> list[dict[str, Any]]:
    """Check issue 5's targets against the peers of this run."""
    targets: list[dict[str, Any]] = []

    def ratio(name: str, num: tuple[str, str, str], den: tuple[str, str, str], op: str, bound: float,
              factor: float = 1.0) -> None:
        a, b = _get(results, *num), _get(results, *den)
        if a is None or b is None or b == 0:
            return
        r = a / (b * factor)
        met = r >= bound if op == ">=" else r <= bound
        targets.append({"target": name, "value": r, "bound": f"{op} {bound:g}", "met": met,
                        "detail": f"{num[1]} {a:.4g} / {den[1]} {b:.4g}"})

    tp, rt, cs, sc = "throughput", "roundtrip", "cold_start", "scale"
    # Default mode, through each API: submit() futures, and the manual's add_job + after_stop loop.
    for peer, api in (("jobsched", "submit"), ("jobsched_manual", "add_job")):
        ratio(f"default throughput ({api}) / floor1", (tp, peer, "jobs_per_s"), (tp, "floor1", "jobs_per_s"),
              ">=", 0.8)
        ratio(f"default throughput ({api}) / ProcessPoolExecutor fork", (tp, peer, "jobs_per_s"),
              (tp, "ppe_fork", "jobs_per_s"), ">=", 2.5)
        ratio(f"default throughput ({api}) / ProcessPoolExecutor spawn", (tp, peer, "jobs_per_s"),
              (tp, "ppe_spawn", "jobs_per_s"), ">=", 2.5)
    for peer, api in (("jobsched", "submit"), ("jobsched_manual", "add_job + start")):
        ratio(f"median round trip ({api}) / floor1", (rt, peer, "median_us"), (rt, "floor1", "median_us"), "<=", 1.3)
    for peer, api in (("jobsched_prefetch2", "submit"), ("jobsched_manual_prefetch2", "add_job")):
        ratio(f"prefetch=2 throughput ({api}) / Pool.imap_unordered", (tp, peer, "jobs_per_s"),
              (tp, "mp_pool", "jobs_per_s"), ">=", 1.0)
        ratio(f"prefetch=2 throughput ({api}) / floor2", (tp, peer, "jobs_per_s"), (tp, "floor2", "jobs_per_s"),
              ">=", 0.7)
    ratio("cold start / floor1", (cs, "jobsched", "seconds"), (cs, "floor1", "seconds"), "<=", 1.5)
    ratio("cold start / ProcessPoolExecutor spawn", (cs, "jobsched", "seconds"), (cs, "ppe_spawn", "seconds"),
          "<", 1.0)
    ratio(f"{sizes.scale_workers} workers x {sizes.scale_n} jobs / floor1", (sc, "jobsched", "seconds"),
          (sc, "floor1", "seconds"), "<=", 1.5)
    for peer, api in (("jobsched", "submit"), ("jobsched_manual", "add_job")):
        eff = _get(results, "efficiency", peer, "efficiency")
        floor_eff = _get(results, "efficiency", "floor1", "efficiency")
        if eff is not None:
            targets.append({"target": f"efficiency ({api})", "value": eff, "bound": ">= 0.97", "met": eff >= 0.97,
                            "detail": f"{sizes.efficiency_n} x {sizes.efficiency_sleep * 1e3:g} ms on {sizes.workers}"
                                      + (f"; floor1 {floor_eff:.3f}" if floor_eff is not None else "")})
    delivered = _get(results, "many", "jobsched", "delivered")
    if "many" in results and "jobsched" in results["many"]:
        ok = delivered == sizes.many_n and not results["many"]["jobsched"].get("errors")
        targets.append({"target": f"{sizes.many_n} jobs on {sizes.many_workers} workers all delivered",
                        "value": delivered or 0, "bound": f"== {sizes.many_n}", "met": ok,
                        "detail": f"peak RSS {_get(results, 'many', 'jobsched', 'peak_rss_mb') or 0:.0f} MB"})
    cost = _get(results, "dashboard", "jobsched", "cost")
    if cost is not None:
        change = _get(results, "dashboard", "jobsched", "rate_change") or 0.0
        targets.append({"target": "dashboard attached: share of scheduler CPU", "value": cost, "bound": "< 0.05",
                        "met": cost < 0.05, "detail": f"throughput change {change * 100:+.1f} % (noisy)"})
    return targets


# ---------------------------------------------------------------------------------------------- output


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "rate":
        return f"{value:,.0f}"
    if unit == "us":
        return f"{value:,.0f}"
    if unit == "s":
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    if unit == "ratio":
        return f"{value:.3f}"
    if unit == "mb":
        return f"{value:,.0f}"
    return f"{value:g}"


def table(results: dict[str, Any], sizes: Sizes, peers: Sequence[str]) -> str:
    """The side-by-side table in Markdown: one row per peer, one column per measured quantity."""
    columns = [
        ("throughput", "jobs_per_s", "rate", "jobs/s"),
        ("roundtrip", "median_us", "us", "RTT median µs"),
        ("roundtrip", "p99_us", "us", "RTT p99 µs"),
        ("cold_start", "seconds", "s", "cold start s"),
        ("efficiency", "efficiency", "ratio", f"efficiency ({sizes.efficiency_n}×{sizes.efficiency_sleep * 1e3:g} ms)"),
        ("scale", "seconds", "s", f"{sizes.scale_workers} workers × {sizes.scale_n:,} s"),
        ("many", "jobs_per_s", "rate", f"{sizes.many_n:,} on {sizes.many_workers}: jobs/s"),
        ("many", "peak_rss_mb", "mb", "peak RSS MB"),
    ]
    columns = [c for c in columns if c[0] in results]
    head = "| peer | " + " | ".join(c[3] for c in columns) + " |"
    lines = [head, "|---|" + "---:|" * len(columns)]
    for peer in peers:
        cells = []
        for scenario, key, unit, _ in columns:
            entry = results.get(scenario, {}).get(peer, {})
            if entry.get("errors") and not entry.get("median"):
                cells.append("error")
            elif "skipped" in entry:
                cells.append("–")
            else:
                cells.append(_fmt(entry.get("median", {}).get(key), unit))
        if any(cells):
            lines.append(f"| {LABELS.get(peer, peer)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def extras(results: dict[str, Any]) -> list[str]:
    out = []
    qm = results.get("queue_memory", {})
    for kind in ("add_job", "submit"):
        v = qm.get(kind, {}).get("median", {})
        if v:
            out.append(f"queued jobs ({kind}, {int(v['n']):,}, not run): {v['bytes_per_job']:.0f} bytes of RSS per job")
    em = results.get("executor_map", {}).get("jobsched", {}).get("median", {})
    if em:
        out.append(f"Executor.map over {int(em['n']):,} items: {em['items_per_s']:,.0f} items/s, peak RSS "
                   f"{em['peak_rss_mb']:.0f} MB, +{em['growth_mb']:.1f} MB while mapping (streams); "
                   f"ProcessPoolExecutor.map: {em['ppe_items_per_s']:,.0f} items/s, +{em['ppe_growth_mb']:.1f} MB "
                   "(submits every item first)")
    db = results.get("dashboard", {}).get("jobsched", {})
    if db.get("median"):
        v = db["median"]
        out.append(f"dashboard attached: its thread used {v['cost'] * 100:.2f} % of the scheduler process's CPU; "
                   f"throughput {v['dashboard_jobs_per_s']:,.0f} vs {v['plain_jobs_per_s']:,.0f} jobs/s without "
                   f"({v['rate_change'] * 100:+.1f} %, {int(v['pairs'])} alternating pairs: within run-to-run noise "
                   "unless larger than about 10 %)")
    elif db.get("runs") and "skipped" in db["runs"][0]:
        out.append(f"dashboard: skipped ({db['runs'][0]['skipped']})")
    return out


def report(data: dict[str, Any]) -> str:
    sizes = Sizes(**data["meta"]["sizes"])
    lines = [table(data["results"], sizes, data["meta"]["peers"]), ""]
    lines += [f"- {x}" for x in extras(data["results"])]
    if data["targets"]:
        lines += ["", "| target | value | bound | met | detail |", "|---|---:|---|---|---|"]
        for t in data["targets"]:
            lines.append(f"| {t['target']} | {t['value']:.3f} | {t['bound']} | {'yes' if t['met'] else 'NO'} | "
                         f"{t['detail']} |")
    return "\n".join(lines)


def _split(values: list[str] | None) -> list[str]:
    return [x for v in values or [] for x in v.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobsched.bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and one repeat (about a minute)")
    parser.add_argument("--json", metavar="PATH", help="write the results here as JSON")
    parser.add_argument("--only", action="append", metavar="NAMES",
                        help=f"comma-separated scenarios and/or peers; scenarios: {','.join(SCENARIOS)}; "
                             f"peers: {','.join(PEERS)}")
    parser.add_argument("--repeat", type=int, default=None, help="runs per measurement (default 3; 1 with --quick)")
    parser.add_argument("--set", action="append", default=[], metavar="SIZE=N",
                        help="override one size of the run (repeatable), e.g. --set throughput_n=1000; sizes: "
                             + ", ".join(k for k, v in Sizes().__dict__.items() if isinstance(v, (int, float))))
    parser.add_argument("--no-compile", action="store_true",
                        help="do not precompile jobsched's bytecode (see ensure_bytecode)")
    ns = parser.parse_args(argv)
    names = _split(ns.only)
    unknown = [n for n in names if n not in SCENARIOS and n not in PEERS]
    if unknown:
        parser.error(f"--only: unknown names {unknown}; scenarios: {SCENARIOS}; peers: {PEERS}")
    scenarios = [s for s in SCENARIOS if s in names] or list(SCENARIOS)
    peers = [p for p in PEERS if p in names] or list(PEERS)
    repeat = ns.repeat or (1 if ns.quick else 3)
    if repeat < 1:
        parser.error("--repeat must be >= 1")
    sizes = Sizes.quick() if ns.quick else Sizes()
    for item in ns.set:
        key, _, value = item.partition("=")
        current = getattr(sizes, key, None)
        if not isinstance(current, (int, float)) or isinstance(current, bool) or not value:
            parser.error(f"--set {item!r}: expected SIZE=N with SIZE one of the sizes listed in --help")
        try:
            setattr(sizes, key, type(current)(value))
        except ValueError:
            parser.error(f"--set {item!r}: {value!r} is not a {type(current).__name__}")
    compiled = False if ns.no_compile else ensure_bytecode()

    started = time.time()
    print(f"jobsched.bench: {', '.join(scenarios)} | peers: {', '.join(peers)} | repeat {repeat}", file=sys.stderr)
    results = run_all(scenarios, peers, sizes, repeat)
    import jobsched

    data: dict[str, Any] = {
        "meta": {
            "command": "python -m jobsched.bench " + " ".join(sys.argv[1:] if argv is None else argv),
            "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
            "duration_s": time.time() - started,
            "jobsched": jobsched.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "quick": ns.quick,
            "repeat": repeat,
            "bytecode_precompiled": compiled,
            "peers": peers,
            "scenarios": scenarios,
            "sizes": sizes.__dict__,
        },
        "results": results,
    }
    data["targets"] = evaluate(results, sizes)
    print(report(data))
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        print(f"\nwrote {ns.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
