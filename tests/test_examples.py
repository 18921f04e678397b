"""The manual's three examples run as a user runs them and print the right results."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_example(name: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", f"jobsched.examples.{name}", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_remote_call_example_prints_each_result() -> None:
    lines = run_example("remote_call").splitlines()
    assert sorted(lines) == sorted(["Hello, Alice!", "Hi, Bob!", "60.0", "360.0"])


def test_simple_example_prints_all_products() -> None:
    lines = run_example("simple").splitlines()
    expected = {f"{x} × {y} = {x * y}" for x in range(5) for y in range(5)}
    assert len(lines) == 25
    assert set(lines) == expected


@pytest.mark.parametrize("seed", [0, 1])
def test_server_worker_example_readds_failures_until_all_painted(seed: int) -> None:
    out = run_example("server_worker", "--seed", str(seed), "--failure-rate", "0.4")
    lines = out.splitlines()
    assert lines[-1] == "all colours painted"
    done = [line for line in lines if line.startswith("done")]
    failed = [line for line in lines if line.startswith("FAILED")]
    painted = sorted(line.split()[3].rstrip(":") for line in done)
    from jobsched.examples.server_worker import COLOURS

    assert painted == sorted(COLOURS)  # every colour exactly once
    starts = [line for line in lines if line.startswith("start")]
    assert len(starts) == len(COLOURS) + len(failed)  # each failure was re-added and re-run
