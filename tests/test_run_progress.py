"""``sched.start(progress=True)``: a tqdm bar over the whole run, whose total grows as jobs are added.

Each case runs in a fresh interpreter, outside a notebook, so that the bar is tqdm's text bar on stderr and
``sys.modules`` tells whether tqdm was imported at all.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import jobsched

HERE = os.path.dirname(os.path.abspath(__file__))

SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import helpers
    from jobsched import Scheduler, remote_call

    def run(progress):
        added = []

        def after_stop(s, job, result):  # the first result adds two jobs: the bar's total grows to 5
            if not added:
                added.append(True)
                s.add_job(remote_call(helpers.add, 10))
                s.add_job(remote_call(helpers.add, 20))

        with Scheduler(echo_output=False) as sched:
            for i in range(3):
                sched.add_job(remote_call(helpers.add, i))
            sched.start(2, after_stop=after_stop, progress=progress)
            print("blocking done", sched.stats()["done"], flush=True)
            print("tqdm imported:", "tqdm" in sys.modules, flush=True)
            sched.start(1, wait=False, progress=progress)
            futures = [sched.submit(helpers.add, i) for i in range(4)]
            print("background results", [f.result(timeout=60) for f in futures], flush=True)
            assert sched.wait(timeout=60)
        print("closed", flush=True)

    if __name__ == "__main__":
        run(sys.argv[1] == "on")
""")


def run_script(tmp_path: Path, progress: bool) -> subprocess.CompletedProcess[str]:
    """Run the script; its output is decoded without newline translation (tqdm's "\\r" is kept)."""
    script = str(tmp_path / "run.py")
    with open(script, "w") as f:
        f.write(SCRIPT.format(tests=HERE))
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(jobsched.__file__)))
    out = subprocess.run([sys.executable, script, "on" if progress else "off"], capture_output=True, timeout=120,
                         env=env)
    return subprocess.CompletedProcess(out.args, out.returncode, out.stdout.decode(), out.stderr.decode())


def test_start_progress_shows_a_text_bar_whose_total_grows_with_the_jobs_added(tmp_path: Path) -> None:
    pytest.importorskip("tqdm")
    out = run_script(tmp_path, progress=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["blocking done 5", "tqdm imported: True", "background results [1, 2, 3, 4]",
                                       "closed"]
    # tqdm redraws with "\r"; the final state of each bar is the last frame before its newline.
    finals = [frame.split("\r")[-1] for frame in out.stderr.split("\n") if "jobs:" in frame]
    assert len(finals) == 2, out.stderr
    assert re.match(r"jobs: 100%\|.*\| 5/5 ", finals[0]), finals[0]  # 3 queued + 2 added by after_stop
    assert re.match(r"jobs: 100%\|.*\| 4/4 ", finals[1]), finals[1]  # a background run: 4 submitted
    frames = out.stderr.split("\n")[0].split("\r")
    assert any(re.search(r" [0-9]/3 ", f) for f in frames), "the first total was the 3 queued jobs"


def test_without_progress_tqdm_is_never_imported(tmp_path: Path) -> None:
    out = run_script(tmp_path, progress=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["blocking done 5", "tqdm imported: False", "background results [1, 2, 3, 4]",
                                       "closed"]
    assert "jobs:" not in out.stderr
