"""The interactive layer: ``%jobsched`` magics, the dashboard widget and progress bars.

Three kinds of tests, all against real worker processes:

* the magics in an in-process IPython ``InteractiveShell`` (fast; every subcommand and bad input);
* the ``Dashboard`` widget read directly (its widgets' values as jobs finish, its buttons, its update rate);
* the same in a real Jupyter kernel (``jupyter_client``): outputs as a notebook receives them, where the
  workers' prints go, and that no worker outlives ``%jobsched stop`` or the kernel.
"""

from __future__ import annotations

import builtins
import re
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helpers
import psutil
import pytest
from waiting import TIMEOUT, eventually

import jobsched
from jobsched import JobError, Scheduler

IPython = pytest.importorskip("IPython")
widgets = pytest.importorskip("ipywidgets")
jupyter_client = pytest.importorskip("jupyter_client")

from IPython.core.error import UsageError  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from traitlets.config import Config  # noqa: E402

from jobsched.notebook import dashboard as dashboard_module  # noqa: E402
from jobsched.notebook.dashboard import UPDATE_INTERVAL, Dashboard  # noqa: E402

STATUS = re.compile(r"^jobsched: (\d+) workers?, (\d+) queued, (\d+) active, (\d+) succeeded, (\d+) failed$")




def gone(pids: list[int]) -> bool:
    """True when none of ``pids`` is a live (non-zombie) process."""
    return not any(helpers.is_live(pid) for pid in pids)


def dashboard_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "jobsched-dashboard"]


# ====================================================================== magics, in-process IPython


@pytest.fixture
def ip() -> Iterator[Any]:
    """An IPython shell with ``%load_ext jobsched``; the default scheduler is stopped afterwards.

    ``InteractiveShell`` installs its own ``__main__`` module and a few builtins: they are put back, so
    that the tests after this one see the interpreter as it was.
    """
    main, saved_builtins = sys.modules["__main__"], set(vars(builtins))
    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "jobsched")
    try:
        yield shell
    finally:
        jobsched.default_scheduler().close(timeout=5)
        sys.modules["__main__"] = main
        for name in set(vars(builtins)) - saved_builtins:
            delattr(builtins, name)


def status(ip: Any, capsys: pytest.CaptureFixture[str]) -> tuple[int, ...]:
    capsys.readouterr()
    ip.run_line_magic("jobsched", "status")
    out = capsys.readouterr().out
    assert out.count("\n") == 1, f"status must print one line, got {out!r}"
    match = STATUS.match(out.rstrip("\n"))
    assert match, f"unexpected status line {out!r}"
    return tuple(int(g) for g in match.groups())


def test_load_ext_registers_the_line_and_cell_magic(ip: Any) -> None:
    magics = ip.magics_manager.magics
    assert "jobsched" in magics["line"] and "jobsched" in magics["cell"]


def test_status_before_anything_started(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    jobsched.default_scheduler().close()
    assert status(ip, capsys) == (0, 0, 0, 0, 0)


def test_start_status_wait_stop(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("jobsched", "start -n 2")
    assert capsys.readouterr().out == "jobsched: started 2 workers in the background\n"
    sched = jobsched.default_scheduler()
    assert sched.running and sched.n_workers == 2
    futures = [sched.submit(helpers.add, i) for i in range(10)]
    futures.append(sched.submit(helpers.raise_value_error, "expected"))
    ip.run_line_magic("jobsched", "wait 60")
    assert [f.result(timeout=0) for f in futures[:10]] == list(range(1, 11))
    assert status(ip, capsys) == (2, 0, 0, 10, 1)
    pids = [w.pid for w in sched.workers]
    assert len(pids) == 2 and not gone(pids)
    ip.run_line_magic("jobsched", "stop")
    assert capsys.readouterr().out == "jobsched: stopped (10 succeeded, 1 failed)\n"
    assert not sched.stats()["closed"] and sched.snapshot().workers == ()
    assert gone(pids), "%jobsched stop returns once the workers have exited"
    # The scheduler kept from before stop is still the default one, with its counts.
    assert jobsched.default_scheduler() is sched
    assert status(ip, capsys) == (0, 0, 0, 10, 1)
    queued = sched.submit(helpers.add, 100)  # queued while stopped: it waits for the next start
    assert sched.n_queued_jobs == 1 and not queued.done()
    with pytest.raises(UsageError, match="no worker runs them; `%jobsched start` first"):
        ip.run_line_magic("jobsched", "wait 60")
    ip.run_line_magic("jobsched", "start -n 1")
    assert capsys.readouterr().out == "jobsched: started 1 worker in the background\n"
    assert queued.result(timeout=TIMEOUT) == 101
    assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
    ip.run_line_magic("jobsched", "wait 60")
    assert status(ip, capsys) == (1, 0, 0, 12, 1)
    assert jobsched.default_scheduler() is sched


def test_status_and_stop_report_the_same_disjoint_counts(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """25 succeeded, 4 raised, 1 cancelled: `%jobsched status` and `%jobsched stop` say exactly that."""
    ip.run_line_magic("jobsched", "start -n 2")
    sched = jobsched.default_scheduler()
    sched.pause()
    futures = [sched.submit(helpers.add, i) for i in range(25)]
    futures += [sched.submit(helpers.raise_value_error, "expected") for _ in range(4)]
    doomed = sched.submit(helpers.add, -1)
    ip.run_line_magic("jobsched", f"cancel {len(futures)}")
    sched.resume()
    ip.run_line_magic("jobsched", "wait 60")
    assert doomed.cancelled() and sum(f.exception(timeout=0) is None for f in futures) == 25
    capsys.readouterr()
    ip.run_line_magic("jobsched", "status")
    assert capsys.readouterr().out == "jobsched: 2 workers, 0 queued, 0 active, 25 succeeded, 4 failed, 1 cancelled\n"
    ip.run_line_magic("jobsched", "stop")
    assert capsys.readouterr().out == "jobsched: stopped (25 succeeded, 4 failed, 1 cancelled)\n"


def test_a_second_start_says_it_is_already_running_and_with_how_many_workers(ip: Any,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("jobsched", "start -n 2")
    assert capsys.readouterr().out == "jobsched: started 2 workers in the background\n"
    sched = jobsched.default_scheduler()
    pids = sorted(w.pid for w in sched.workers if w.pid is not None)
    ip.run_line_magic("jobsched", "start")
    assert capsys.readouterr().out == ("jobsched: already running with 2 workers (`%jobsched scale N` changes how "
                                       "many, `%jobsched stop` stops them)\n")
    ip.run_line_magic("jobsched", "start -n 2")
    assert capsys.readouterr().out.startswith("jobsched: already running with 2 workers (")
    assert jobsched.default_scheduler() is sched and sched.n_workers == 2
    assert sorted(w.pid for w in sched.workers if w.pid is not None) == pids  # the same workers go on
    ip.run_line_magic("jobsched", "start -n 1")
    assert capsys.readouterr().out == "jobsched: already running with 2 workers; scaling to 1 worker\n"
    assert sched.n_workers == 1
    assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2


def test_scale_pause_resume(ip: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ip.run_line_magic("jobsched", "scale 1")  # not running yet: scale starts it
    assert capsys.readouterr().out == "jobsched: scaling to 1 worker\n"
    sched = jobsched.default_scheduler()
    assert sched.running and sched.n_workers == 1
    ip.run_line_magic("jobsched", "scale 2")
    eventually(lambda: sched.stats()["workers"] == 2, "2 workers")
    go, end = tmp_path / "go", tmp_path / "end"
    witness = sched.submit(helpers.report_when, str(go), "after the submit", str(end))
    eventually(lambda: sched.n_active_jobs == 1, "the witness job running")
    ip.run_line_magic("jobsched", "pause")
    assert "paused" in capsys.readouterr().out and sched.paused
    future = sched.submit(helpers.add, 1)
    # The witness: a progress report sent after the submit has been handled, so the loop has decided what to
    # hand the idle worker; paused, it must be nothing.
    go.touch()
    eventually(lambda: any(w.progress is not None and w.progress[2] == "after the submit" for w in sched.workers),
               "the witness's progress report")
    assert not future.done()
    assert (sched.n_queued_jobs, sched.n_active_jobs) == (1, 1)
    end.touch()
    assert witness.result(timeout=TIMEOUT) == "after the submit"
    assert not future.done()
    assert status(ip, capsys) == (2, 1, 0, 1, 0)
    ip.run_line_magic("jobsched", "resume")
    assert capsys.readouterr().out == "jobsched: resumed\n"
    assert future.result(timeout=TIMEOUT) == 2
    ip.run_line_magic("jobsched", "scale 0")
    eventually(lambda: sched.stats()["workers"] == 0, "no worker after scale 0")


@pytest.mark.parametrize(
    "line",
    ["bogus", "start -n", "start -n 0", "start -n x", "start 2", "start --bogus", "scale", "scale -1",
     "scale two", "scale 1 2", "pause now", "resume 1", "status --all", "stop now", "wait -5", "wait x",
     "start -n '2", "start --journal", "cancel", "cancel x", "cancel -1", "cancel 1 2"],
)
def test_bad_input_is_a_usage_error_with_the_usage(ip: Any, line: str) -> None:
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("jobsched", line)
    message = str(info.value)
    assert "usage:" in message and "%jobsched start [-n N]" in message
    assert not jobsched.default_scheduler().running, "bad input must not start anything"


def test_bad_input_in_a_cell_prints_the_message_without_a_traceback(ip: Any,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    result = ip.run_cell("%jobsched scale lots")
    captured = capsys.readouterr()
    assert isinstance(result.error_in_exec, UsageError)
    assert "UsageError: %jobsched scale: argument n: expected an integer >= 0, got 'lots'" in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_help(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_cell("%jobsched?")
    out = capsys.readouterr().out
    assert "Drive jobsched's default scheduler" in out and "%%jobsched [-o NAME]" in out
    ip.run_line_magic("jobsched", "help")
    assert capsys.readouterr().out.startswith("usage:\n  %jobsched ")


def test_no_argument_displays_the_dashboard(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    shown: list[Any] = []
    ip.display_pub.publish = lambda data, *args, **kwargs: shown.append(data)  # what a frontend would receive
    try:
        ip.run_line_magic("jobsched", "")
    finally:
        del ip.display_pub.publish
    assert len(shown) == 1 and "Dashboard" in shown[0]["text/plain"]
    poller = dashboard_module._pollers[jobsched.default_scheduler()]
    assert len(poller.views) == 1
    for dash in list(poller.views):
        dash.close()


def test_cell_magic_ships_the_names_it_uses_and_binds_the_value(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_cell(textwrap.dedent("""\
        import math
        import os
        import os.path as osp
        data = list(range(10))
        def square(x):
            return x * x
        class Box:
            def __init__(self, v):
                self.v = v
        unused = threading_lock = None
    """))
    capsys.readouterr()
    result = ip.run_cell("%%jobsched -o r\ntotal = sum(square(x) for x in data)\n"
                         "(total, math.floor(2.5), osp.basename('/a/b'), Box(3).v, os.getpid())")
    assert result.success
    assert capsys.readouterr().out == "jobsched: running the cell in a worker; r is bound when it finishes\n"
    ip.run_line_magic("jobsched", "wait 60")
    total, floor, base, v, pid = ip.user_ns["r"]
    assert (total, floor, base, v) == (285, 2, "b", 3)
    assert pid in [w.pid for w in jobsched.default_scheduler().workers], "the cell ran in a worker"
    assert "total" not in ip.user_ns, "assignments in the cell happen in the worker"
    assert ip.user_ns["_jobsched_cell"].result(timeout=0) == ip.user_ns["r"]


def test_cell_magic_starts_the_default_scheduler(ip: Any) -> None:
    jobsched.default_scheduler().close()
    ip.run_cell("%%jobsched -o n\n6 * 7")
    assert jobsched.default_scheduler().running
    ip.run_line_magic("jobsched", "wait 60")
    assert ip.user_ns["n"] == 42


def test_cell_magic_without_a_name_and_without_a_final_expression(ip: Any) -> None:
    ip.run_cell("%%jobsched\nx = 1")
    ip.run_cell("%%jobsched\n41 + 1")
    ip.run_line_magic("jobsched", "wait 60")
    assert ip.user_ns["_jobsched_cell"].result(timeout=0) == 42


def test_cell_magic_failure_prints_the_remote_traceback(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_cell("%%jobsched -o bad\nx = 1\nx / 0")
    job = ip.user_ns["_jobsched_cell"]
    with pytest.raises(JobError) as info:
        job.result(timeout=TIMEOUT)
    assert info.value.remote_type == "ZeroDivisionError"
    err = capsys.readouterr().err
    assert "ZeroDivisionError: division by zero" in err
    assert "x / 0" in err, "the traceback shows the cell's own line"
    assert "run_cell" not in err, "the plumbing frame is left out"
    assert "bad" not in ip.user_ns
    ip.run_line_magic("jobsched", "wait 60")  # a failed cell does not make wait fail


def test_a_function_redefined_in_a_later_cell_is_used_in_its_new_form(ip: Any) -> None:
    ip.run_cell("def f(x):\n    return x + 1")
    ip.run_cell("%%jobsched -o first\nf(1)")
    ip.run_line_magic("jobsched", "wait 60")
    ip.run_cell("def f(x):\n    return x * 100")
    ip.run_cell("%%jobsched -o second\nf(1)")
    ip.run_line_magic("jobsched", "wait 60")
    assert (ip.user_ns["first"], ip.user_ns["second"]) == (2, 100)


def test_unpicklable_values_are_not_sent_and_a_warning_says_so(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.user_ns["lock"] = threading.Lock()
    ip.user_ns["n"] = 5
    capsys.readouterr()
    ip.run_cell("%%jobsched -o r\nlock if False else n")
    assert "not sent to the worker (they cannot be pickled): lock (lock)" in capsys.readouterr().err
    ip.run_line_magic("jobsched", "wait 60")
    assert ip.user_ns["r"] == 5
    ip.run_cell("%%jobsched -o r2\nlock.acquire()")
    with pytest.raises(JobError, match="NameError"):
        ip.user_ns["_jobsched_cell"].result(timeout=TIMEOUT)


def test_the_cell_runs_in_a_worker_without_the_notebook_stack(ip: Any) -> None:
    ip.run_cell("%%jobsched -o loaded\nimport sys\n"
                "sorted({'IPython', 'ipywidgets', 'ipykernel', 'tqdm'} & set(sys.modules))")
    ip.run_line_magic("jobsched", "wait 60")
    assert ip.user_ns["loaded"] == []


@pytest.mark.parametrize(
    ("line", "body", "message"),
    [
        ("-o 1x", "1", "NAME must be a Python identifier, got '1x'"),
        ("-o class", "1", "NAME must be a Python identifier"),
        ("-o", "1", "expected one argument"),
        ("--bogus", "1", "unrecognized arguments"),
        ("-o r extra", "1", "unrecognized arguments"),
        ("-o r", "%time 1", "IPython syntax"),
        ("-o r", "!ls", "IPython syntax"),
        ("-o r", "def f(:\n  pass", "not valid Python"),
    ],
)
def test_cell_magic_bad_input_is_a_usage_error(ip: Any, line: str, body: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        ip.run_cell_magic("jobsched", line, body)
    assert not jobsched.default_scheduler().running, "bad input must not start anything"


# ====================================================================== the dashboard widget


def bar_parts(dash: Dashboard) -> dict[str, float]:
    """The overall bar's parts that are not 0: ``{"succeeded": 80.0, "failed": 20.0}`` (percent of the width)."""
    return {part: float(width) for part, width in re.findall(
        r'data-part="(\w+)" data-count="\d+" title="[^"]*" style="width:([\d.]+)%', dash.progress.value)}


def values(dash: Dashboard) -> dict[str, Any]:
    """Everything the dashboard shows, read from its widgets."""
    return {
        **{name: w.value for name, w in dash.counts.items()},
        "status": dash.status.value,
        "state": dash.state.value,
        "progress": bar_parts(dash),
        "workers": dash.worker_table.value,
        "log": dash.output_log.value,
        "error": (dash.error.value, dash.error.layout.display),
        "disabled": {d: b.disabled for d, b in dash.buttons.items()},
    }


def test_dom_contract_classes_and_buttons(dash: Dashboard) -> None:
    assert isinstance(dash, widgets.VBox) and "jobsched-dashboard" in dash._dom_classes
    found: dict[str, list[Any]] = {}
    for w in dash._descendants():
        for css in w._dom_classes:
            found.setdefault(css, []).append(w)
    for css in ("jobsched-queued", "jobsched-active", "jobsched-succeeded", "jobsched-failed", "jobsched-cancelled",
                "jobsched-from-journal", "jobsched-status", "jobsched-workers", "jobsched-log", "jobsched-progress",
                "jobsched-cancel-buttons"):
        assert len(found.get(css, [])) == 1, css
    assert isinstance(found["jobsched-progress"][0], widgets.HTML)
    assert isinstance(found["jobsched-workers"][0], widgets.HTML)
    buttons = {css: found[css][0] for css in ("jobsched-pause", "jobsched-resume", "jobsched-scale-down",
                                              "jobsched-scale-up", "jobsched-stop")}
    assert {css: (type(b), b.description) for css, b in buttons.items()} == {
        "jobsched-pause": (widgets.Button, "Pause"), "jobsched-resume": (widgets.Button, "Resume"),
        "jobsched-scale-down": (widgets.Button, "Scale −"), "jobsched-scale-up": (widgets.Button, "Scale +"),
        "jobsched-stop": (widgets.Button, "Stop")}


def test_a_never_started_scheduler(dash: Dashboard) -> None:
    v = values(dash)
    assert (v["queued"], v["active"], v["succeeded"], v["failed"]) == ("0", "0", "0", "0")
    assert v["status"] == "jobsched: 0 workers, 0 queued, 0 active, 0 succeeded, 0 failed"
    assert "stopped" in v["state"]
    assert v["progress"] == {}
    assert v["workers"].count('<tr class="jobsched-worker"') == 0
    assert v["error"] == ("", "none")


def test_widget_values_follow_the_jobs(sched: Scheduler, dash: Dashboard) -> None:
    sched.start(1, wait=False)
    sched.pause()
    futures = [sched.submit(helpers.sleep_then, 0.2, i) for i in range(4)]
    futures.append(sched.submit(helpers.raise_value_error, "expected"))
    dash.refresh()
    v = values(dash)
    assert (v["queued"], v["active"], v["succeeded"], v["failed"]) == ("5", "0", "0", "0")
    assert v["progress"] == {} and "paused" in v["state"]
    assert v["disabled"] == {"Pause": True, "Resume": False, "Scale −": False, "Scale +": False, "Stop": False}
    sched.resume()
    # No refresh() from here: the dashboard's own thread must bring the values.
    eventually(lambda: int(dash.counts["succeeded"].value) >= 1, "succeeded >= 1 on the dashboard")
    eventually(lambda: dash.counts["succeeded"].value == "4", "succeeded = 4 on the dashboard")
    for f in futures[:4]:
        f.result(timeout=TIMEOUT)
    eventually(lambda: dash.counts["failed"].value == "1", "failed = 1 on the dashboard")
    v = values(dash)
    assert (v["queued"], v["active"], v["succeeded"], v["failed"]) == ("0", "0", "4", "1")
    assert v["status"] == "jobsched: 1 worker, 0 queued, 0 active, 4 succeeded, 1 failed"
    assert v["progress"] == {"succeeded": 80.0, "failed": 20.0} and "running" in v["state"]
    rows = re.findall(r'<tr class="jobsched-worker"[^>]*>(.*?)</tr>', v["workers"])
    assert len(rows) == 1
    cells = re.findall(r"<td[^>]*>(.*?)</td>", rows[0])
    (w,) = sched.workers
    assert cells == ["0", str(w.pid), "ready", "", "", "", "5 (1 failed)", "0"]
    assert "address" not in v["workers"], "local workers have no address column"
    assert "ETA —" in dash.rate.value


def test_worker_table_shows_the_running_job_and_how_long_it_has_run(sched: Scheduler, dash: Dashboard,
                                                                     tmp_path: Path) -> None:
    sched.start(2, wait=False)
    gate = tmp_path / "gate"
    future = sched.submit(helpers.wait_for_file, str(gate), "done")
    eventually(lambda: 'data-state="running"' in dash.worker_table.value, "a running worker in the table")
    eventually(lambda: re.search(r'<td data-col="elapsed">\d\.\d s</td>', dash.worker_table.value) is not None
               and '<td data-col="elapsed">0.0 s</td>' not in dash.worker_table.value, "the job's elapsed time")
    (running,) = [w for w in sched.workers if w.job is not None]
    row = re.search(rf'<tr class="jobsched-worker" data-worker="{running.index}"[^>]*>(.*?)</tr>',
                    dash.worker_table.value)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    assert cells[:4] == [str(running.index), str(running.pid), "running", str(running.job.index)]  # type: ignore[union-attr]
    gate.touch()
    assert future.result(timeout=TIMEOUT) == "done"


def test_log_shows_each_workers_output_bounded(sched: Scheduler, dash: Dashboard) -> None:
    sched.echo_output = False
    sched.start(1, wait=False)
    assert sched.submit(helpers.print_lines, 3, 5).result(timeout=TIMEOUT) == 3
    eventually(lambda: "2 xxxxx" in dash.output_log.value, "the printed lines in the log")
    assert '<div class="jobsched-log-worker" data-worker="0">' in dash.output_log.value
    assert sched.submit(helpers.print_lines, 500, 1000).result(timeout=TIMEOUT) == 500
    eventually(lambda: "499 " in dash.output_log.value, "the last line in the log")
    lines = re.search(r"<pre[^>]*>(.*?)</pre>", dash.output_log.value, re.S).group(1).split("\n")  # type: ignore[union-attr]
    assert len(lines) == dashboard_module.LOG_LINES
    assert all(len(line) <= dashboard_module.LOG_LINE_CHARS + 2 for line in lines)
    assert sched.submit(print, "<b>not bold</b>").result(timeout=TIMEOUT) is None
    eventually(lambda: "&lt;b&gt;not bold&lt;/b&gt;" in dash.output_log.value, "escaped HTML in the log")


def test_buttons_drive_the_scheduler(sched: Scheduler, dash: Dashboard) -> None:
    sched.start(1, wait=False)
    dash.buttons["Pause"].click()
    assert sched.paused and dash.buttons["Pause"].disabled and not dash.buttons["Resume"].disabled
    dash.buttons["Resume"].click()
    assert not sched.paused and not dash.buttons["Pause"].disabled
    dash.buttons["Scale +"].click()
    assert sched.n_workers == 2
    eventually(lambda: dash.worker_table.value.count('<tr class="jobsched-worker"') == 2, "2 rows")
    dash.buttons["Scale −"].click()
    dash.buttons["Scale −"].click()
    assert sched.n_workers == 0
    assert dash.buttons["Scale −"].disabled
    dash.buttons["Scale +"].click()
    assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
    pids = [w.pid for w in sched.workers if w.pid is not None]
    dash.buttons["Stop"].click()  # closes the workers, keeps the scheduler (as %jobsched stop does)
    eventually(lambda: "stopped" in dash.state.value, "the dashboard to show the stopped scheduler")
    eventually(lambda: gone(pids), "the workers to exit after Stop")
    assert not sched.stats()["closed"] and dash.buttons["Stop"].disabled and not dash.buttons["Scale +"].disabled
    assert dash.updating
    dash.buttons["Scale +"].click()  # and it runs again
    assert sched.submit(helpers.add, 2).result(timeout=TIMEOUT) == 3
    eventually(lambda: dash.counts["succeeded"].value == "2", "the counts kept across Stop")
    sched.close()
    eventually(lambda: "closed" in dash.state.value, "the dashboard to show the closed scheduler")
    assert all(b.disabled for b in dash.buttons.values())
    eventually(lambda: not dash.updating, "the dashboard thread to stop once the scheduler is closed")


def test_a_button_error_is_shown_on_the_dashboard(sched: Scheduler, dash: Dashboard) -> None:
    sched.close()
    dash.buttons["Scale +"].click()  # a closed scheduler refuses to start
    assert "Scale +: SchedulerClosedError" in dash.error.value and dash.error.layout.display is None


def test_the_scheduler_error_is_shown(sched: Scheduler, dash: Dashboard) -> None:
    def after_stop(s: Scheduler, job: Any, result: Any) -> None:
        raise KeyError("after_stop broke")

    sched.add_job(jobsched.remote_call(helpers.add, 1))
    sched.start(1, after_stop=after_stop, wait=False)
    eventually(lambda: "after_stop broke" in dash.error.value, "the error on the dashboard")
    assert dash.error.layout.display is None


def report_then_wait() -> Any:
    """A job that reports ``jobsched.progress(done, total, note)`` and then waits for a file (by value:
    nested, so cloudpickle ships it and the worker imports nothing of the tests)."""

    def run(gate: str, done: float, total: float | None, note: str) -> float:
        import os
        import time

        import jobsched

        jobsched.progress(done, total, note)
        deadline = time.monotonic() + 60
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)
        return done

    return run


def progress_cell(dash: Dashboard, worker: int) -> str:
    """The progress cell of ``worker``'s row ("" while the dashboard shows no such row)."""
    row = re.search(rf'<tr class="jobsched-worker" data-worker="{worker}"[^>]*>(.*?)</tr>', dash.worker_table.value)
    cell = None if row is None else re.search(r'<td data-col="progress">(.*?)</td>', row.group(1))
    return "" if cell is None else cell.group(1)


def busy_worker(sched: Scheduler, job: int) -> int:
    (index,) = [r.index for r in sched.snapshot().workers if r.job == job]
    return index


def test_a_bar_per_busy_worker_determinate_or_not(sched: Scheduler, dash: Dashboard, tmp_path: Path) -> None:
    sched.start(2, wait=False)
    gate = tmp_path / "gate"
    run = report_then_wait()
    counted = sched.submit(run, str(gate), 40, 100, "loading")
    open_ended = sched.submit(run, str(gate), 12, None, "<rows>")
    eventually(lambda: sum(r.progress is not None for r in sched.snapshot().workers) == 2, "both reports")
    jobs = {r.job: r.index for r in sched.snapshot().workers}
    w_counted, w_open = jobs[0], jobs[1]
    eventually(lambda: "40/100" in progress_cell(dash, w_counted) and "12" in progress_cell(dash, w_open),
               "the reports on the dashboard")
    assert progress_cell(dash, w_counted) == (
        f'<progress class="jobsched-worker-progress" data-worker="{w_counted}" value="40" max="100">'
        "</progress> 40/100 (40%) loading")
    # No total: shown as at work for so long (no bar that would look like a fraction), and the note escaped.
    cell = progress_cell(dash, w_open)
    assert re.fullmatch(rf'<span class="jobsched-worker-activity" data-worker="{w_open}">running [\d.]+ s</span> '
                        r'12 &lt;rows&gt;', cell), cell
    gate.touch()
    assert (counted.result(timeout=TIMEOUT), open_ended.result(timeout=TIMEOUT)) == (40, 12)
    eventually(lambda: "jobsched-worker-progress" not in dash.worker_table.value, "no bar once the workers are idle")


def test_status_shows_each_busy_worker_with_its_job_time_and_progress(ip: Any, capsys: pytest.CaptureFixture[str],
                                                                      tmp_path: Path) -> None:
    ip.run_line_magic("jobsched", "start -n 2")
    sched = jobsched.default_scheduler()
    gate = tmp_path / "gate"
    future = sched.submit(report_then_wait(), str(gate), 3, 4, "step 3")
    eventually(lambda: any(r.progress is not None for r in sched.snapshot().workers), "the report")
    worker = busy_worker(sched, 0)
    capsys.readouterr()
    ip.run_line_magic("jobsched", "status")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "jobsched: 2 workers, 0 queued, 1 active, 0 succeeded, 0 failed"
    assert len(lines) == 2, lines
    assert re.fullmatch(rf"  worker {worker}: job 0, \d+\.\d s, 3/4 \(75%\) step 3", lines[1]), lines
    gate.touch()
    assert future.result(timeout=TIMEOUT) == 3
    ip.run_line_magic("jobsched", "wait 60")
    assert status(ip, capsys) == (2, 0, 0, 1, 0)


def test_cancel_magic_and_the_cancelled_count(ip: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ip.run_line_magic("jobsched", "start -n 1")
    sched = jobsched.default_scheduler()
    gate = tmp_path / "gate"
    running = sched.submit(report_then_wait(), str(gate), 1, 2, "")
    queued = sched.submit(helpers.add, 1)
    eventually(lambda: [r.job for r in sched.snapshot().workers] == [0], "job 0 running")
    pid = sched.workers[0].pid
    capsys.readouterr()
    ip.run_line_magic("jobsched", "cancel 1")
    assert capsys.readouterr().out == "jobsched: cancelled job 1\n"
    ip.run_line_magic("jobsched", "cancel 0")
    assert capsys.readouterr().out == "jobsched: cancelled job 0\n"
    for f in (running, queued):
        with pytest.raises(BaseException) as info:
            f.result(timeout=TIMEOUT)
        assert type(info.value).__name__ in ("CancelledError", "JobCancelled"), info.value
    eventually(lambda: pid is not None and gone([pid]), "the worker of the cancelled running job to be killed")
    ip.run_line_magic("jobsched", "cancel 0")
    assert capsys.readouterr().out == "jobsched: job 0 is neither queued nor running: nothing to cancel\n"
    eventually(lambda: sched.stats()["cancelled"] == 2, "2 cancelled")
    capsys.readouterr()
    ip.run_line_magic("jobsched", "status")
    out = capsys.readouterr().out
    # A cancelled job is counted once, as cancelled: not also as failed.
    assert out == "jobsched: 1 worker, 0 queued, 0 active, 0 succeeded, 0 failed, 2 cancelled\n", out
    assert sched.submit(helpers.add, 2).result(timeout=TIMEOUT) == 3, "the replaced worker runs the next job"


def test_the_cancel_button_cancels_the_job_it_names(sched: Scheduler, dash: Dashboard, tmp_path: Path) -> None:
    sched.start(2, wait=False)
    gate = tmp_path / "gate"
    run = report_then_wait()
    doomed = sched.submit(run, str(gate), 1, None, "")
    kept = sched.submit(run, str(gate), 2, None, "")
    eventually(lambda: len(dash.cancel_box.children) == 2 and all(
        not b.disabled for b in dash.cancel_box.children), "a live cancel button per busy worker")
    doomed_worker = busy_worker(sched, 0)
    button = dash.cancel_buttons[doomed_worker]
    assert button.description == f"Cancel job 0 (worker {doomed_worker})"
    assert {"jobsched-cancel", f"jobsched-cancel-worker-{doomed_worker}"} <= set(button._dom_classes)
    pid = sched.snapshot().workers[doomed_worker].pid
    button.click()
    with pytest.raises(BaseException) as info:
        doomed.result(timeout=TIMEOUT)
    assert type(info.value).__name__ in ("CancelledError", "JobCancelled"), info.value
    eventually(lambda: pid is not None and gone([pid]), "the cancelled job's worker to be killed")
    eventually(lambda: dash.counts["cancelled"].value == "1", "the cancelled count on the dashboard")
    assert dash.counts["cancelled"].layout.display is None, "shown once not 0"
    assert dash.counts["from_journal"].layout.display == "none", "hidden while 0"
    assert "1 cancelled" in dash.status.value
    assert not kept.done(), "the other worker's job goes on"
    gate.touch()
    assert kept.result(timeout=TIMEOUT) == 2
    eventually(lambda: all(b.disabled and "idle" in b.description for b in dash.cancel_box.children),
               "idle workers' buttons disabled")
    assert dash.error.layout.display == "none", dash.error.value


def test_a_cancel_click_for_a_job_that_ended_meanwhile_says_so(sched: Scheduler, dash: Dashboard,
                                                                tmp_path: Path) -> None:
    sched.start(1, wait=False)
    gate = tmp_path / "gate"
    future = sched.submit(report_then_wait(), str(gate), 1, None, "")
    eventually(lambda: dash.cancel_buttons.get(0) is not None and not dash.cancel_buttons[0].disabled,
               "the button of the busy worker")
    with dash._poller.render_lock:  # hold the dashboard still: the button keeps naming job 0
        gate.touch()
        assert future.result(timeout=TIMEOUT) == 1
        # A lost race is a notice beside the counts, not an error.
        assert dash._cancel(0) == "job 0 finished before it could be cancelled"
    assert sched.stats()["cancelled"] == 0


def test_the_worker_table_shows_an_address_when_a_worker_has_one() -> None:
    from jobsched._core.snapshot import WorkerRow

    rows = (WorkerRow(0, 4242, "tcp://10.0.0.5:40001", "running", 3, 0.0, 1.5, None, 2, 0, (), None),
            WorkerRow(1, 4343, None, "ready", None, None, 0.0, None, 0, 0, (), None))
    table = dashboard_module.render_workers(rows)
    assert "<th>address</th>" in table
    assert '<td data-col="address">tcp://10.0.0.5:40001</td>' in table and '<td data-col="address"></td>' in table
    # A job that reported nothing yet: shown as at work for so long, with no bar.
    assert '<span class="jobsched-worker-activity" data-worker="0">running 1.5 s</span>' in table
    assert "<progress" not in table


def test_the_worker_table_shows_which_attempt_a_retried_job_is_on(tmp_path: Path) -> None:
    """A job retried by retry_on twice runs its third attempt: the worker's row says so; a first attempt
    shows the job's index alone."""
    import reproduce_jobs

    from jobsched._core.snapshot import WorkerRow

    release = tmp_path / "release"
    with Scheduler(retry_on=ConnectionError, max_retries=5) as sched:
        sched.start(1, wait=False)
        future = sched.submit(reproduce_jobs.fails_then_waits, str(tmp_path / "log"), 3, str(release))
        rows: list[WorkerRow] = []

        def third_attempt_runs() -> bool:
            rows[:] = sched.snapshot().workers
            return any(r.job is not None and r.attempt == 3 for r in rows)

        eventually(third_attempt_runs, "the job's third attempt on a worker")
        table = dashboard_module.render_workers(tuple(rows))
        assert re.search(r'<td data-col="job">\d+ <span class="jobsched-attempt" data-attempt="3">'
                         r"\(attempt 3\)</span></td>", table), table
        release.touch()
        assert future.result(timeout=TIMEOUT) == 3
    first = WorkerRow(0, 4242, None, "running", 7, 0.0, 1.5, None, 2, 0, (), None)
    assert '<td data-col="job">7</td>' in dashboard_module.render_workers((first,))


def test_start_journal_makes_a_default_scheduler_with_a_journal(ip: Any, capsys: pytest.CaptureFixture[str],
                                                                tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    ip.run_line_magic("jobsched", f"start -n 1 --journal {path}")
    sched = jobsched.default_scheduler()
    assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
    ip.run_line_magic("jobsched", "start")
    assert jobsched.default_scheduler() is sched, "a plain start keeps the journal"
    with pytest.raises(UsageError, match="stop"):
        ip.run_line_magic("jobsched", f"start --journal {tmp_path / 'other.sqlite'}")
    ip.run_line_magic("jobsched", "stop")
    ip.run_line_magic("jobsched", f"start -n 1 --journal {path}")
    assert jobsched.default_scheduler() is sched, "the same journal: the same scheduler"
    ip.run_line_magic("jobsched", "stop")
    sched.close()
    ip.run_line_magic("jobsched", f"start -n 1 --journal {path}")  # a new run over the same journal
    again = jobsched.default_scheduler()
    assert again is not sched
    assert again.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
    ip.run_line_magic("jobsched", "wait 60")
    capsys.readouterr()
    ip.run_line_magic("jobsched", "status")
    assert "1 from journal" in capsys.readouterr().out


def test_two_dashboards_of_one_scheduler_agree(sched: Scheduler, dash: Dashboard) -> None:
    other = sched.dashboard()
    try:
        sched.start(2, wait=False)
        futures = [sched.submit(helpers.sleep_then, 0.05, i) for i in range(20)]
        for _ in range(10):  # at any moment, not just at the end
            time.sleep(0.05)
            assert values(dash) == values(other)
        for f in futures:
            f.result(timeout=TIMEOUT)
        dash.refresh()
        assert values(dash) == values(other)
        assert dash.counts["succeeded"].value == "20"
        assert len(dashboard_threads()) == 1, "one update thread per scheduler, whatever the number of dashboards"
    finally:
        other.close()


def test_updates_stay_bounded_during_5000_quick_jobs(sched: Scheduler, dash: Dashboard) -> None:
    sched.start(2, wait=False)
    before, t0 = dash.n_updates, time.monotonic()
    futures = [sched.submit(helpers.identity, i) for i in range(5000)]
    assert sched.wait(timeout=300)
    elapsed = time.monotonic() - t0
    updates = dash.n_updates - before
    assert [f.result(timeout=0) for f in futures[-3:]] == [4997, 4998, 4999]
    # The thread sleeps UPDATE_INTERVAL between updates, however many jobs finish: the count depends on
    # the time taken, never on the number of jobs.
    assert updates <= elapsed / UPDATE_INTERVAL + 2, (updates, elapsed)
    assert updates < 5000 / 10
    eventually(lambda: dash.counts["succeeded"].value == "5000", "the final count")


def test_closing_the_dashboard_stops_its_thread(sched: Scheduler) -> None:
    d = sched.dashboard()
    assert d.updating and len(dashboard_threads()) == 1
    d.close()
    d.close()
    assert not d.updating
    eventually(lambda: not dashboard_threads(), "the dashboard thread to end")
    with pytest.raises(ValueError, match="closed"):
        d.refresh()


def test_a_dashboard_opened_just_after_the_last_one_closed_still_updates(sched: Scheduler) -> None:
    sched.start(1, wait=False)
    for _ in range(5):  # the old thread may be ending just then: the new dashboard must not be orphaned
        old = sched.dashboard()
        old.close()
        new = sched.dashboard()
        try:
            done = sched.stats()["done"]
            sched.submit(helpers.add, 1).result(timeout=TIMEOUT)
            eventually(lambda new=new, want=str(done + 1): new.counts["succeeded"].value == want,
                       "the new dashboard to update itself")
            assert new.updating
        finally:
            new.close()


def test_closing_the_scheduler_ends_the_updates_after_the_final_state(sched: Scheduler, dash: Dashboard) -> None:
    sched.start(1, wait=False)
    assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
    sched.close()
    eventually(lambda: not dashboard_threads(), "the dashboard thread to end")
    assert "closed" in dash.state.value and dash.counts["succeeded"].value == "1"
    assert dash.status.value == "jobsched: 0 workers, 0 queued, 0 active, 1 succeeded, 0 failed"


def test_dashboard_rejects_what_is_not_a_scheduler() -> None:
    with pytest.raises(TypeError, match=r"expected a jobsched\.Scheduler"):
        Dashboard("sched")  # type: ignore[arg-type]


# ====================================================================== progress bars (terminal)


WORKER_FILE = """\
from jobsched import start_simple_worker


def run(x):
    return x * x


def worker():
    start_simple_worker(run)
"""


def test_start_simple_server_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    worker = tmp_path / "square_worker.py"
    worker.write_text(WORKER_FILE)
    results: dict[int, int] = {}
    jobsched.start_simple_server(worker, range(7), results.__setitem__, n_workers=2, progress=True)
    assert results == {i: i * i for i in range(7)}
    assert "7/7" in capsys.readouterr().err


def test_server_start_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    worker = tmp_path / "square_worker.py"
    worker.write_text(WORKER_FILE)
    sched = jobsched.make_server(worker)
    try:
        results: list[int] = []
        jobsched.server_start(sched, [1, 2, 3], lambda data, result: results.append(result), n_workers=1,
                              progress=True)
        assert sorted(results) == [1, 4, 9]
        assert "3/3" in capsys.readouterr().err
        jobsched.server_start(sched, [], lambda data, result: None, progress=True)
        assert "jobs: 0job" in capsys.readouterr().err
    finally:
        jobsched.server_close(sched)


def test_no_progress_no_tqdm(tmp_path: Path) -> None:
    import subprocess

    code = ("import sys, jobsched\n"
            "with jobsched.Executor(1) as ex: assert list(ex.map(abs, [-1, -2])) == [1, 2]\n"
            "print(sorted({'tqdm', 'IPython', 'ipywidgets', 'ipykernel'} & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=True)
    assert out.stdout == "[]\n"


# ====================================================================== in a real Jupyter kernel


@dataclass
class Reply:
    """What a notebook receives for one cell."""

    stdout: str = ""
    stderr: str = ""
    displays: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    payload: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.stdout + self.stderr + "".join(str(d) for d in self.displays) + (self.error or "")


class Kernel:
    """A real IPython kernel, driven like a notebook frontend."""

    def __init__(self, cwd: Path) -> None:
        self.km = jupyter_client.KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=TIMEOUT)

    @property
    def pid(self) -> int:
        return int(self.km.provisioner.pid)  # type: ignore[union-attr]

    def run(self, code: str, timeout: float = TIMEOUT) -> Reply:
        msg_id = self.kc.execute(code)
        reply = Reply()
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    reply.stdout += content["text"]
                else:
                    reply.stderr += content["text"]
            elif kind in ("display_data", "execute_result"):
                reply.displays.append(content["data"])
            elif kind == "error":
                reply.error = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content["execution_state"] == "idle":
                break
        while True:  # skip stale replies (wait_for_ready may leave a kernel_info_reply behind)
            shell = self.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if shell["parent_header"].get("msg_id") == msg_id:
                break
        reply.payload = shell["content"].get("payload", [])
        return reply

    def value(self, expression: str) -> Any:
        """Evaluate ``expression`` in the kernel and return it (it must have a literal repr)."""
        import ast

        reply = self.run(f"print(repr({expression}))")
        assert reply.error is None, reply.error
        return ast.literal_eval(reply.stdout.strip())

    def worker_pids(self) -> list[int]:
        """The kernel's worker processes (not the scheduler's reaper, a ``/bin/sh`` that lives until close)."""
        return [p.pid for p in psutil.Process(self.pid).children(recursive=True)
                if "jobsched.worker" in " ".join(p.cmdline())]

    def shutdown(self, now: bool = False) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=now)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    k = Kernel(tmp_path_factory.mktemp("kernel"))
    try:
        assert k.run("%load_ext jobsched").error is None
        yield k
    finally:
        k.shutdown()


@pytest.fixture
def in_kernel(kernel: Kernel) -> Iterator[Kernel]:
    """The shared kernel; whatever a test started there is closed after it (the next test gets a fresh
    default scheduler, with counts from 0, and no process of this one is left in the kernel)."""
    try:
        yield kernel
    finally:
        kernel.run("%jobsched stop\nimport jobsched as _j\n_j.default_scheduler().close(timeout=5)")


def test_kernel_magics_outputs(in_kernel: Kernel) -> None:
    k = in_kernel
    assert k.run("%jobsched start -n 2").stdout == "jobsched: started 2 workers in the background\n"
    assert k.run("import jobsched\nsched = jobsched.default_scheduler()\n"
                 "fs = [sched.submit(abs, -i) for i in range(10)]\n"
                 "%jobsched wait 60").error is None
    reply = k.run("%jobsched status")
    assert (reply.stdout, reply.stderr) == ("jobsched: 2 workers, 0 queued, 0 active, 10 succeeded, 0 failed\n", "")
    assert k.run("%jobsched pause").stdout.startswith("jobsched: paused")
    assert k.value("sched.paused") is True
    assert k.run("%jobsched resume").stdout == "jobsched: resumed\n"
    reply = k.run("%jobsched scale 3")
    assert reply.stdout == "jobsched: scaling to 3 workers\n"
    assert k.value("sched.n_workers") == 3
    bad = k.run("%jobsched scale many")
    assert bad.error is None and "Traceback" not in bad.text
    assert "UsageError: %jobsched scale: argument n: expected an integer >= 0, got 'many'" in bad.stderr
    unknown = k.run("%jobsched launch")
    assert "UsageError: %jobsched: unknown subcommand 'launch'" in unknown.stderr and "usage:" in unknown.stderr
    help_page = k.run("%jobsched?")
    assert any("Drive jobsched's default scheduler" in p.get("data", {}).get("text/plain", "")
               for p in help_page.payload)
    # The third worker may be forked by a zygote that boots first (one spawned worker per core): wait for it.
    eventually(lambda: len(k.worker_pids()) == 3, "3 worker processes")
    pids = k.worker_pids()
    assert len(pids) == 3
    assert k.run("%jobsched stop").stdout == "jobsched: stopped (10 succeeded, 0 failed)\n"
    assert k.worker_pids() == []
    assert gone(pids)
    # The `sched` kept from before stop goes on working after start, with its counts.
    assert k.run("%jobsched status").stdout == "jobsched: 0 workers, 0 queued, 0 active, 10 succeeded, 0 failed\n"
    assert k.run("%jobsched start -n 1").error is None
    assert k.value("sched.submit(abs, -5).result(60)") == 5
    assert k.value("sched is jobsched.default_scheduler()") is True
    assert k.run("%jobsched wait 60\n%jobsched stop").stdout == "jobsched: stopped (11 succeeded, 0 failed)\n"


def test_kernel_cell_magic_binds_the_value_and_shows_the_outcome_in_its_cell(in_kernel: Kernel) -> None:
    k = in_kernel
    k.run("%jobsched start -n 2")
    assert k.run("import math\ndata = list(range(100))\ndef cube(x):\n    return x ** 3").error is None
    reply = k.run("%%jobsched -o r\nsum(cube(x) for x in data) + math.floor(0.5)")
    assert reply.error is None
    k.run("first = _jobsched_cell")
    assert any("application/vnd.jupyter.widget-view+json" in d for d in reply.displays), \
        "the cell shows an output area for the outcome"
    failing = k.run("%%jobsched -o bad\ndef inner():\n    return {}['missing']\ninner()")
    assert failing.error is None, "the cell itself does not fail: the job runs in the background"
    assert k.run("%jobsched wait 60").error is None
    assert k.value("r") == sum(x ** 3 for x in range(100))
    assert k.value("'bad' in globals()") is False
    outputs = k.value("[dict(o) for o in _jobsched_cell.output.outputs]")
    assert len(outputs) == 1 and outputs[0]["name"] == "stderr"
    text = outputs[0]["text"]
    assert "KeyError: 'missing'" in text and "return {}['missing']" in text and "in inner" in text
    assert k.value("[dict(o) for o in first.output.outputs]") == [
        {"output_type": "stream", "name": "stdout", "text": f"jobsched: done: r = {sum(x ** 3 for x in range(100))}\n"}]


def test_kernel_worker_output_never_lands_in_a_cell(in_kernel: Kernel) -> None:
    k = in_kernel
    k.run("%jobsched start -n 1")
    reply = k.run("import jobsched\ns = jobsched.default_scheduler()\n"
                  "s.submit(print, 'WORKER-SAYS-HELLO').result(60)\n"
                  # The witness: the scheduler has taken the line in (where an echo would have printed it).
                  "import time\nt = time.monotonic() + 60\n"
                  "while not s.workers[0].output and time.monotonic() < t:\n    time.sleep(0.01)")
    later = k.run("import time; time.sleep(0.5); print('cell output')")
    assert "WORKER-SAYS-HELLO" not in reply.text + later.text
    assert later.stdout == "cell output\n"
    assert k.value("list(jobsched.default_scheduler().workers[0].output)") == ["WORKER-SAYS-HELLO"], \
        "the output is kept for the dashboard's log"


def test_kernel_display_of_the_scheduler_is_the_dashboard(in_kernel: Kernel) -> None:
    k = in_kernel
    k.run("%jobsched start -n 2")
    for code in ("%jobsched", "display(jobsched.default_scheduler())", "jobsched.default_scheduler().dashboard()"):
        reply = k.run("import jobsched\n" + code)
        assert reply.error is None
        assert len(reply.displays) == 1 and "application/vnd.jupyter.widget-view+json" in reply.displays[0], code
    k.run("from jobsched.notebook.dashboard import _pollers\n"
          "dashes = list(_pollers[jobsched.default_scheduler()].views)\n"
          "fs = [jobsched.default_scheduler().submit(abs, -i) for i in range(30)]\n"
          "%jobsched wait 60")
    # Idle kernel: the dashboards' thread must still bring the final count.
    eventually(lambda: k.value("sorted({d.counts['succeeded'].value for d in dashes})") == ["30"],
               "every dashboard to show succeeded = 30")
    assert k.value("len(dashes)") == 3
    k.run("for d in dashes: d.close()")


def test_kernel_map_progress_is_a_widget(in_kernel: Kernel) -> None:
    reply = in_kernel.run("import jobsched\nwith jobsched.Executor(1) as ex:\n"
                          "    print(list(ex.map(abs, [-1, -2, -3], progress=True)))")
    assert reply.error is None and reply.stdout == "[1, 2, 3]\n"
    assert any("application/vnd.jupyter.widget-view+json" in d for d in reply.displays), "a tqdm widget bar"


@pytest.mark.parametrize("now", [False, True], ids=["graceful", "killed"])
def test_no_worker_outlives_the_kernel(tmp_path: Path, now: bool) -> None:
    k = Kernel(tmp_path)
    try:
        k.run("%load_ext jobsched")
        assert k.run("%jobsched start -n 2").error is None
        k.run("%jobsched wait 60")
        eventually(lambda: len(k.worker_pids()) == 2, "2 worker processes")
        pids = k.worker_pids()
    finally:
        k.shutdown(now=now)  # now=True: SIGKILL, no atexit; the workers' watchdog must notice
    eventually(lambda: gone(pids), "the workers to exit with their kernel", timeout=30)
