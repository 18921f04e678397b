"""``python benchmarks/run.py``: jobsched against its peers, side by side, in one run.

Every number is a ratio waiting to happen: the machine may be shared and noisy, so jobsched is compared
with peers measured in the same run, and each number is the median of ``--repeat`` runs (3 by default),
the repeats interleaved across peers so that a burst of noise does not land on one peer only.

The benchmark lives in the repository, not in the wheel, and runs from a checkout::

    pip install -e .                                  # or any install of jobsched: that one is measured
    pip install -r benchmarks/requirements.txt        # the optional peers (loky, dask) and the plots
    python benchmarks/run.py                          # the full run (about 10 minutes)
    python benchmarks/run.py --quick                  # smaller sizes, one repeat (about a minute)
    python benchmarks/run.py --only throughput,roundtrip --only floor1,jobsched --json out.json
    python benchmarks/run.py --quick --set throughput_n=2000      # change one size
    git worktree add /tmp/jobsched-base v0.9 && python benchmarks/run.py --baseline /tmp/jobsched-base

``--only`` takes scenario and peer names (comma-separated, repeatable); a scenario or peer not named is
left out, unless no name of that kind is given. If jobsched is not installed, the checkout this file
belongs to is put on the path (of this process and of its children). ``--baseline PATH`` measures the
jobsched of another checkout (a baseline) in the same run, as peers ``base_jobsched`` and
``base_jobsched_manual``, for the targets that say "no slower than today".

The files: ``run.py`` (this one: the command line, and the child processes it drives), ``scenarios.py``
(what is measured, the sizes), ``report.py`` (targets and table), ``child.py`` + ``peers.py`` (the child
process: one peer per process) and ``floor.py`` (the raw-socket floor).
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
import textwrap
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# Sibling modules: benchmarks/ is on sys.path, as the folder of this script.
from report import evaluate, report
from scenarios import (
    BASE,
    BASELINE_PEERS,
    FRESH_PROCESS,
    JOBSCHED_ONLY,
    PEER_HELP,
    PEERS,
    SCENARIO_HELP,
    SCENARIOS,
    Sizes,
    params_for,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # the checkout: benchmarks/ next to jobsched/
REQUEST_TIMEOUT = 900.0  # a peer that has not answered one measurement in 15 minutes is hung
NOT_MEASURED = "not measured in this scenario (see params_for in benchmarks/scenarios.py)"


# ---------------------------------------------------------------------------------------------- children


class Child:
    """A ``benchmarks/child.py`` process (see peers.py): requests on its stdin, answers on a private pipe."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "child.py")],
            stdin=subprocess.PIPE,
            stdout=write_fd,
            text=True,
            env=env,
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
        return f"{module} is not installed (pip install -r benchmarks/requirements.txt)"
    return None


def ensure_bytecode() -> bool:
    """Compile jobsched's modules once, as ``pip install`` does, if they are not cached yet.

    Worker start-up is part of what is measured. With ``PYTHONDONTWRITEBYTECODE`` set (or a read-only
    checkout), every jobsched worker would compile jobsched from source at each start while the peers load
    cached bytecode of the standard library: an unfair handicap that no installed package has.
    """
    spec = importlib.util.find_spec("jobsched")
    if spec is None or not spec.submodule_search_locations:
        return False
    return all(compileall.compile_dir(package, quiet=2, workers=1) for package in spec.submodule_search_locations)


def jobsched_env() -> dict[str, str] | None:
    """The environment for the children: None (inherit) if jobsched is importable, else with ROOT on PYTHONPATH.

    The measured jobsched is the one installed (``pip install -e .`` or a release); only if there is none
    does the checkout this script belongs to stand in, for this process and every process under it.
    """
    if importlib.util.find_spec("jobsched") is not None:
        return None
    sys.path.insert(0, str(ROOT))
    if importlib.util.find_spec("jobsched") is None:
        sys.exit(f"jobsched is not importable, and {ROOT} holds no jobsched/: pip install jobsched, or run "
                 "benchmarks/run.py from a checkout of jobsched")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-key median of successful runs (numbers only)."""
    good = [r for r in runs if "error" not in r and "skipped" not in r]
    if not good:
        return {}
    keys = [k for k, v in good[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return {k: median(r[k] for r in good if k in r) for k in keys}


def baseline_env(path: Path) -> dict[str, str]:
    """The environment of a child that measures the jobsched of the checkout at ``path`` (--baseline)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(path), os.environ.get("PYTHONPATH")]))}


def run_all(scenarios: Sequence[str], peers: Sequence[str], sizes: Sizes, repeat: int,
            env: Mapping[str, str] | None = None, log: Any = sys.stderr,
            base_env: Mapping[str, str] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Measure each scenario with each peer, ``repeat`` times interleaved (BASE + peer: with ``base_env``)."""
    results: dict[str, dict[str, dict[str, Any]]] = {}
    children: dict[str, Child] = {}

    def child_for(peer: str, scenario: str) -> tuple[Child, bool]:
        peer_env = base_env if peer.startswith(BASE) else env
        if scenario in FRESH_PROCESS:
            return Child(peer_env), True
        if peer not in children:
            children[peer] = Child(peer_env)
        return children[peer], False

    try:
        for scenario in scenarios:
            if scenario in JOBSCHED_ONLY:
                kinds = ["add_job", "submit"] if scenario == "queue_memory" else ["jobsched"]
                todo = [(k, params_for(scenario, k, sizes)) for k in kinds]
            else:
                todo = [(p, params_for(scenario, p.removeprefix(BASE), sizes)) for p in peers]
            entries = results.setdefault(scenario, {})
            for name, params in todo:
                if params is None:
                    entries[name] = {"skipped": NOT_MEASURED}
                elif name in PEERS and (why := available(name)):
                    entries[name] = {"skipped": why}
                else:
                    entries[name] = {"params": params, "runs": []}
            n_rep = 1 if scenario in ("dashboard", "journal") else repeat
            for rep in range(n_rep):
                for name, params in todo:
                    entry = entries[name]
                    if "runs" not in entry or params is None:
                        continue
                    child, fresh = child_for(name, scenario)
                    t0 = time.monotonic()
                    peer = "jobsched" if scenario in JOBSCHED_ONLY else name.removeprefix(BASE)
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
              "items_per_s", "growth_mb", "cost", "ratio", "results_s"):
        if k in run:
            shown.append(f"{k}={run[k]:.4g}")
    for k, v in run.items():  # the payload scenarios' keys carry their array sizes
        if k.startswith(("rt_", "peak_", "on_over_off_")) and isinstance(v, float):
            shown.append(f"{k}={v:.3g}")
    return " ".join(shown)


def _commit(path: Path) -> str | None:
    """The git commit of a checkout, if it is one."""
    try:
        done = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def _split(values: list[str] | None) -> list[str]:
    return [x for v in values or [] for x in v.split(",") if x]


HELP_WIDTH = 79  # the text below is laid out here, not by argparse (which would break names mid-word)
DESCRIPTION = """\
Run jobsched and the tools it replaces side by side, in one run on one machine.

Every number is the median of --repeat runs, interleaved across peers, and
jobsched is judged by ratios to peers measured in the same run: on a busy
machine, compare within one run, not across runs."""


def _listing(title: str, rows: Mapping[str, str]) -> list[str]:
    """A titled list, one name per line with its description, wrapped under the description's column."""
    column = 2 + max(map(len, rows)) + 2
    lines = [title]
    for name, text in rows.items():
        lines += textwrap.wrap(text, HELP_WIDTH, initial_indent=f"  {name}".ljust(column),
                               subsequent_indent=" " * column, break_long_words=False, break_on_hyphens=False)
    return lines


def help_epilog() -> str:
    """The part of --help after the options: scenarios, peers and sizes, one per line, and examples."""
    full, quick = Sizes().__dict__, Sizes.quick().__dict__
    sizes = {k: f"{v} / {quick[k]}" for k, v in full.items() if isinstance(v, (int, float))}
    lines = [
        *_listing("scenarios (a trivial job is x -> x + 1, one per task; 2 workers unless said):", SCENARIO_HELP),
        "",
        *_listing("peers (loky, dask: pip install -r benchmarks/requirements.txt):", PEER_HELP),
        "",
        *_listing("sizes, full run / --quick (change one with --set SIZE=N):", sizes),
        "",
        "--only takes scenario and peer names, comma-separated, and may be repeated;",
        "a kind of name (scenarios, peers) of which none is given runs in full.",
        "",
        "examples:",
        "  python benchmarks/run.py                # the full run (about 10 minutes)",
        "  python benchmarks/run.py --quick        # smaller sizes, one repeat (1 min)",
        "  python benchmarks/run.py --quick --only throughput,roundtrip --only jobsched",
        "  python benchmarks/run.py --quick --set throughput_n=2000 --json out.json",
        "  python benchmarks/run.py --only payload,shm_threshold --json payload.json",
        "  git worktree add /tmp/jobsched-base <previous release>",
        "  python benchmarks/run.py --baseline /tmp/jobsched-base   # and that version",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/run.py", description=DESCRIPTION,
                                     epilog=help_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and one repeat (about a minute)")
    parser.add_argument("--json", metavar="PATH", help="write the results here as JSON")
    parser.add_argument("--only", action="append", metavar="NAMES",
                        help="run only these scenarios and/or peers (comma-separated names, listed below)")
    parser.add_argument("--repeat", type=int, default=None, metavar="N",
                        help="runs per measurement (default 3; 1 with --quick)")
    parser.add_argument("--set", action="append", default=[], metavar="SIZE=N",
                        help="change one size of the run, e.g. --set throughput_n=1000 (sizes listed below)")
    parser.add_argument("--baseline", metavar="PATH", type=Path,
                        help="also measure the jobsched of this checkout (a baseline) in the same run")
    parser.add_argument("--no-compile", action="store_true",
                        help="do not precompile jobsched's bytecode first (worker start-up is measured)")
    ns = parser.parse_args(argv)
    names = _split(ns.only)
    unknown = [n for n in names if n not in SCENARIOS and n not in PEERS]
    if unknown:
        parser.error(f"--only: unknown names {unknown}; scenarios: {SCENARIOS}; peers: {PEERS}")
    scenarios = [s for s in SCENARIOS if s in names] or list(SCENARIOS)
    peers = [p for p in PEERS if p in names] or list(PEERS)
    base_env = None
    if ns.baseline is not None:
        ns.baseline = ns.baseline.resolve()
        if not (ns.baseline / "jobsched" / "__init__.py").is_file():
            parser.error(f"--baseline {ns.baseline}: no jobsched/ there; give a checkout of jobsched "
                         "(e.g. git worktree add /tmp/jobsched-base <commit>)")
        base_env = baseline_env(ns.baseline)
        peers = [q for p in peers for q in ((p, BASE + p) if p in BASELINE_PEERS else (p,))]
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
    env = jobsched_env()
    compiled = False if ns.no_compile else ensure_bytecode()
    if ns.baseline is not None and not ns.no_compile:
        compileall.compile_dir(ns.baseline / "jobsched", quiet=2, workers=1)

    started = time.time()
    print(f"benchmarks/run.py: {', '.join(scenarios)} | peers: {', '.join(peers)} | repeat {repeat}", file=sys.stderr)
    results = run_all(scenarios, peers, sizes, repeat, env, base_env=base_env)
    import jobsched

    data: dict[str, Any] = {
        "meta": {
            "command": "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
            "duration_s": time.time() - started,
            "jobsched": jobsched.__version__,
            "jobsched_path": os.path.dirname(os.path.abspath(jobsched.__file__)),  # installed, or this checkout
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "quick": ns.quick,
            "repeat": repeat,
            "bytecode_precompiled": compiled,
            "baseline": None if ns.baseline is None else {"path": str(ns.baseline), "commit": _commit(ns.baseline)},
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
