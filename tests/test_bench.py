"""``python benchmarks/run.py`` runs end to end: a tiny quick run exits 0 and writes sane JSON.

Speed is not asserted here: speed is what the benchmark measures, on a machine that may be busy. This test
only checks that every part of the benchmark (the peers' child processes, the floor, jobsched in both
APIs, the memory scenario, the table, the targets, the JSON) works, so that a full run will too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil

TIMEOUT = 240.0  # the run below takes some 10-20 s on an idle 2-core machine
RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"  # in the checkout, not in the wheel
CPU_PER_JOB = RUN.with_name("cpu_per_job.py")

SCENARIOS = ["throughput", "roundtrip", "cold_start", "queue_memory"]
PEERS = ["floor1", "jobsched", "jobsched_auto", "jobsched_manual"]


def run_bench(*args: str, env: dict[str, str] | None = None, script: Path = RUN) -> subprocess.CompletedProcess[str]:
    """Run the benchmark; on timeout, kill it and every process under it (its children have own sessions)."""
    proc = subprocess.Popen([sys.executable, str(script), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        try:
            descendants = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        for p in [*descendants, psutil.Process(proc.pid)]:
            try:
                p.kill()
            except psutil.Error:
                pass
        out, err = proc.communicate(timeout=30)
        raise AssertionError(f"the benchmark did not finish in {TIMEOUT:g} s:\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def median(data: dict[str, Any], scenario: str, peer: str) -> dict[str, float]:
    entry = data["results"][scenario][peer]
    assert not entry.get("errors"), f"{scenario}/{peer} failed: {entry.get('errors')}"
    assert len(entry["runs"]) == 1
    result: dict[str, float] = entry["median"]
    return result


def test_a_tiny_quick_run_writes_the_expected_json(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    done = run_bench("--quick", "--only", ",".join(SCENARIOS), "--only", ",".join(PEERS),
                     "--set", "throughput_n=300", "--set", "roundtrip_n=30", "--set", "queue_n=5000",
                     "--json", str(path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| peer |" in done.stdout  # the table
    data = json.loads(path.read_text())

    meta = data["meta"]
    assert meta["quick"] is True and meta["repeat"] == 1
    assert meta["scenarios"] == SCENARIOS and meta["peers"] == PEERS
    assert meta["sizes"]["throughput_n"] == 300 and meta["sizes"]["workers"] == 2
    assert meta["command"].startswith("python benchmarks/run.py --quick")

    for peer in PEERS:
        tp = median(data, "throughput", peer)
        assert tp["n"] == 300 and tp["jobs_per_s"] > 0 and tp["seconds"] > 0
    for peer in ("floor1", "jobsched", "jobsched_manual"):
        rt = median(data, "roundtrip", peer)
        assert 0 < rt["median_us"] <= rt["p99_us"] < 10e6
    for peer in ("floor1", "jobsched", "jobsched_auto"):
        cold = median(data, "cold_start", peer)
        assert 0 < cold["seconds"] < 60
    # The manual's loop starts its workers as submit does: no cold start of its own.
    assert "skipped" in data["results"]["cold_start"]["jobsched_manual"]

    for kind in ("add_job", "submit"):
        queued = median(data, "queue_memory", kind)
        assert queued["queued"] == 5000
        assert 0 < queued["bytes_per_job"] < 100_000

    names = [t["target"] for t in data["targets"]]
    assert "default throughput (submit) / floor1" in names
    assert "median round trip (submit) / floor1" in names
    assert "median round trip (add_job + start) / floor1" in names
    for target in data["targets"]:
        assert set(target) == {"target", "value", "bound", "met", "detail", "group"}
        assert isinstance(target["met"], bool) and target["value"] >= 0


def test_the_payload_scenarios_measure_arrays_memory_and_the_shm_threshold(tmp_path: Path) -> None:
    """Arrays there and back (a 2 MiB one standing for 100 MiB), shm on vs off, and --baseline (this checkout)."""
    path = tmp_path / "bench.json"
    done = run_bench("--quick", "--only", "payload,shm_threshold", "--only", "jobsched,ppe_fork",
                     "--set", f"payload_big={2 << 20}", "--set", "payload_n=5", "--set", "payload_big_n=2",
                     "--set", "shm_budget_mb=0.1", "--set", "shm_blocks=2",
                     "--baseline", str(RUN.parent.parent), "--json", str(path))
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(path.read_text())
    assert data["meta"]["peers"] == ["jobsched", "base_jobsched", "ppe_fork"]
    assert data["meta"]["baseline"]["path"] == str(RUN.parent.parent)
    for peer in ("jobsched", "base_jobsched", "ppe_fork"):
        got = median(data, "payload", peer)
        for size in ("1KiB", "1MiB", "2MiB"):
            assert 0 < got[f"memcpy_{size}_ms"] < got[f"rt_{size}_ms"] < 10_000
            assert got[f"x_memcpy_{size}"] > 1
        # The scheduler's process holds the result, read in full: at least about one payload at its peak.
        if "peak_2MiB_x" in got:  # absent where /proc/self/clear_refs cannot reset the peak
            assert 0.5 < got["peak_2MiB_x"] < 10
    shm = median(data, "shm_threshold", "jobsched")
    for size in ("16KiB", "256KiB", "1MiB", "8MiB"):
        assert shm[f"on_{size}_us"] > 0 and shm[f"off_{size}_us"] > 0
    assert "| float64 array, sent and returned |" in done.stdout
    assert "| array (uint8), 1 worker |" in done.stdout and "shared memory is faster from" in done.stdout
    targets = {t["target"]: t for t in data["targets"]}
    assert targets["2 MiB round trip: ProcessPoolExecutor fork / jobsched submit"]["group"].startswith("Large payloads")
    assert "2 MiB round trip (submit) / one memcpy of it" in targets
    assert "1 KiB payload round trip (submit) / baseline" in targets


def test_cpu_per_job_prints_the_cpu_of_the_scheduler_and_its_worker_per_job() -> None:
    proc = run_bench("--jobs", "100", "--rounds", "2", script=CPU_PER_JOB)
    assert proc.returncode == 0, proc.stderr
    assert "medians of 2 blocks of 100 round trips" in proc.stdout
    rows = re.findall(r"^  (x \+ 1|1 KiB array) +scheduler user +([\d.]+) +system +([\d.]+) +worker +([\d.]+) +"
                      r"total +([\d.]+)$", proc.stdout, re.M)
    assert [r[0] for r in rows] == ["x + 1", "1 KiB array"], proc.stdout
    for _, user, system, worker, total in rows:
        assert float(user) + float(system) > 0  # the scheduler did work, and so did the worker (clock ticks)
        assert abs(float(user) + float(system) + float(worker) - float(total)) < 0.2


def test_seeding_prints_the_microseconds_per_job_with_and_without_a_seed() -> None:
    """benchmarks/seeding.py runs and prints each row: the worker's part, numpy's, and the scheduler's."""
    env = {**os.environ, "PYTHONPATH": str(RUN.parent.parent)}
    proc = run_bench("--jobs", "200", "--repeat", "1", script=RUN.with_name("seeding.py"), env=env)
    assert proc.returncode == 0, proc.stderr
    rows = dict(re.findall(r"^(\S.*?)  +([\d.]+)  +[+-][\d.]+$", proc.stdout, re.M))
    assert set(rows) == {"worker, no seed", "worker, seed: random", "worker, seed: random + numpy",
                         "scheduler, seed from a key (journal or key=)",
                         "scheduler, seed from the job's content (no key)"}, proc.stdout
    assert float(rows["worker, seed: random"]) > float(rows["worker, no seed"])  # it does seed


def test_unknown_names_are_refused_with_the_list_of_valid_ones() -> None:
    done = run_bench("--only", "throughput,nonsense")
    assert done.returncode == 2
    assert "nonsense" in done.stderr and "floor1" in done.stderr


def load_scenarios() -> ModuleType:
    """benchmarks/scenarios.py (stdlib only), loaded by path: the benchmark is not an importable package."""
    spec = importlib.util.spec_from_file_location("bench_scenarios", RUN.parent / "scenarios.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # @dataclass looks its module up while it makes the class
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_help_lists_each_scenario_and_peer_on_its_own_line_in_plain_text() -> None:
    scenarios = load_scenarios()
    done = run_bench("--help", env={**os.environ, "COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "``" not in text and "`" not in text  # no reST markup
    for name in [*scenarios.SCENARIOS, *scenarios.PEERS]:
        # At the start of a line (after the indent), then its description: never wrapped mid-word.
        assert re.search(rf"^  {name}  +\S", text, re.MULTILINE), f"{name} has no line of its own:\n{text}"
        assert scenarios.SCENARIO_HELP.get(name, scenarios.PEER_HELP.get(name)) in text
    for line in text.splitlines():
        assert len(line) <= 80, f"a line wider than the terminal: {line!r}"
