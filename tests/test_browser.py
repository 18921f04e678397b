"""The dashboard as users see it: the quick-start notebook in JupyterLab and Notebook 7, in headless Chromium.

A widget package most often breaks in the user's browser, not in Python: "Error displaying widget: model not
found", a front end that does not match the kernel's ipywidgets. Unit tests that read the widgets' Python state
cannot see that, so this test drives the real thing:

1. a Jupyter server (JupyterLab, or Notebook 7) on 127.0.0.1 with a random port and token, isolated config, data,
   runtime and IPython dirs, and a kernelspec pinned to this interpreter (where jobsched is installed);
2. a copy of ``notebooks/01-quickstart.ipynb``, outputs cleared, whose final ``%jobsched stop`` is held back (the
   test runs it itself at the end) and with one cell appended that submits gated jobs: each holds its worker until
   the test creates a gate file, so jobs are still queued when the test clicks Pause, however loaded the machine;
3. Debian's Chromium (never a downloaded browser) through Playwright opens it and runs Run → Run All Cells;
4. in the page: no widget error, the ``%jobsched status`` line, the dashboard's done count reaching the number of
   jobs, one worker row per worker (with the pids of live worker processes), Pause stopping dispatch while jobs
   are queued, Resume finishing them, Scale + / Scale − changing the worker rows; a PNG of the dashboard goes to
   ``test-artifacts/``;
5. the test types ``%jobsched stop`` into a new cell and runs it, shuts the kernel and the server down through
   the REST API (then signals the server's process group), and checks that every process it saw is gone.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import conftest
import helpers
import psutil
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
# JOBSCHED_BROWSER_NOTEBOOK runs the same checks on another notebook (one that follows the quick start's shape).
NOTEBOOK = Path(os.environ.get("JOBSCHED_BROWSER_NOTEBOOK", REPO / "notebooks" / "01-quickstart.ipynb"))
ARTIFACTS = REPO / "test-artifacts"

CHROMIUM = "/usr/bin/chromium"
# No sandbox (root, containers), no GPU, and nothing that reaches beyond loopback on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",  # a proxy in the environment must not see (or break) requests to 127.0.0.1
]

# Gated jobs appended by the test: more than any sensible worker count, so some stay queued while all workers
# hold one; after the gate opens each takes GATED_JOB_S, so an unpaused scheduler would run them all in seconds.
N_GATED = 12
GATED_JOB_S = 0.2
PAUSE_HOLD_S = 3.0  # how long the done count must stand still while paused (many times GATED_JOB_S)

STATUS_RE = re.compile(r"jobsched: (\d+) workers?, (\d+) queued, (\d+) active, (\d+) succeeded, (\d+) failed")
WIDGET_ERRORS = ("Error displaying widget", "model not found")

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------- helpers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# urllib honours *_proxy variables; requests to our own loopback server must go direct.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _poll(read: Callable[[], T], ok: Callable[[T], bool], timeout: float, what: str, page: Page | None = None) -> T:
    """Call ``read`` until ``ok`` holds for its value; fail with the last value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {value!r}")
        # page.wait_for_timeout keeps Playwright's event loop turning (console messages, dialogs) while we wait.
        if page is not None:
            page.wait_for_timeout(100)
        else:
            time.sleep(0.1)


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


# ------------------------------------------------------------------------------------------ the Jupyter server


@dataclass
class JupyterServer:
    flavor: str  # "lab" or "notebook"
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    log_path: Path
    seen: dict[int, psutil.Process] = field(default_factory=dict)  # every descendant ever seen, by pid

    def api(self, method: str, path: str, timeout: float = 10.0) -> Any:
        req = urllib.request.Request(self.url + path, method=method, headers={"Authorization": f"token {self.token}"})
        if method in ("POST", "PATCH", "PUT"):
            req.data = b"{}"
            req.add_header("Content-Type", "application/json")
        with _OPENER.open(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def track(self) -> list[psutil.Process]:
        """Remember the server's descendants (kernel, workers) so the end can check that all of them are gone.

        Workers orphaned by a dying kernel would no longer be our descendants, and the conftest leak check
        (which walks children) would miss them: hence this record, taken while they are still attached.
        """
        try:
            kids: list[psutil.Process] = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []
        for p in kids:
            self.seen.setdefault(p.pid, p)
        return kids

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"

    def shutdown(self) -> list[str]:
        """Shut down kernels, then the server; return what is still alive afterwards (and kill it)."""
        problems: list[str] = []
        self.track()
        # 1. Kernels, politely: a shutdown_request lets the kernel run its atexit hooks (jobsched closes workers).
        try:
            for s in self.api("GET", "/api/sessions"):
                self.api("DELETE", f"/api/sessions/{s['id']}", timeout=30)
            for k in self.api("GET", "/api/kernels"):
                self.api("DELETE", f"/api/kernels/{k['id']}", timeout=30)
            _poll(lambda: self.api("GET", "/api/kernels"), lambda ks: not ks, 20, "the kernels to shut down")
        except (OSError, AssertionError, ValueError) as exc:
            problems.append(f"kernel shutdown through the REST API failed: {exc!r}")
        # 2. The server: /api/shutdown, then signals to its whole process group (it runs in its own session).
        try:
            self.api("POST", "/api/shutdown", timeout=5)
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            problems.append("the server ignored /api/shutdown for 15 s; sent SIGTERM")
            _killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                _killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # 3. Everything ever seen below the server must be gone (kernels run in sessions of their own, so the
        #    process-group signal does not reach them: only a clean kernel shutdown does).
        procs = list(self.seen.values())
        _, alive = psutil.wait_procs(procs, timeout=15)
        alive = [p for p in alive if helpers.is_live(p)]
        for p in alive:
            try:
                problems.append(f"left running: pid {p.pid} {' '.join(p.cmdline())[:200]}")
                p.kill()
            except psutil.Error:
                pass
        return problems


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _isolated_env(home: Path) -> dict[str, str]:
    """Environment for the server (and so the kernel): user-level Jupyter and IPython state under ``home``."""
    env = dict(os.environ)
    for var in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTER_TOKEN", "JUPYTER_PREFER_ENV_PATH"):
        env.pop(var, None)
    env.update(
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "config" / "lab" / "user-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "config" / "lab" / "workspaces"),
        IPYTHONDIR=str(home / "ipython"),
        # The kernel and its workers import this working tree's jobsched, whatever is installed.
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        PYTHONUNBUFFERED="1",
    )
    # The kernelspec names this interpreter by absolute path: a bare "python" could be another one on PATH.
    _write_json(home / "data" / "kernels" / "python3" / "kernel.json", {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": False},
    })
    # Nothing may leave loopback: no news feed, no update check, no PyPI extension manager.
    _write_json(home / "config" / "jupyter_server_config.json", {
        "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                   "extension_manager": "readonly"},
        "KernelSpecManager": {"ensure_native_kernel": False},
    })
    settings = home / "config" / "lab" / "user-settings" / "@jupyterlab"
    _write_json(settings / "apputils-extension" / "notification.jupyterlab-settings",
                {"fetchNews": "false", "checkForUpdates": False})
    # Every cell stays in the DOM (no virtual scrolling), so the page can be read top to bottom.
    _write_json(settings / "notebook-extension" / "tracker.jupyterlab-settings", {"windowingMode": "none"})
    return env


def _start_server(flavor: str, root: Path, home: Path) -> JupyterServer:
    env = _isolated_env(home)
    module = "jupyterlab" if flavor == "lab" else "notebook"
    last_error = ""
    for _attempt in range(3):  # a port that another process grabbed between our probe and the bind: retry
        port, token = _free_port(), secrets.token_hex(24)
        log_path = home / f"jupyter-{flavor}-{port}.log"
        cmd = [
            sys.executable, "-m", module, "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--ServerApp.terminals_enabled=False",
        ]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        server = JupyterServer(flavor, proc, f"http://127.0.0.1:{port}", token, log_path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                server.api("GET", "/api/status", timeout=2)
                return server
            except (OSError, ValueError):
                time.sleep(0.2)
        last_error = server.log_tail()
        if proc.poll() is None:  # alive but not answering within 60 s: give up rather than retry
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            break
        proc.wait()
    raise AssertionError(f"the Jupyter server ({module}) did not start; its log ends with:\n{last_error}")


@contextmanager
def jupyter_server(flavor: str, root: Path, home: Path) -> Iterator[JupyterServer]:
    t0 = time.monotonic()
    server = _start_server(flavor, root, home)
    print(f"[{flavor}] server up in {time.monotonic() - t0:.1f}s")
    ok = False
    try:
        yield server
        ok = True
    finally:
        t1 = time.monotonic()
        problems = server.shutdown()
        print(f"[{flavor}] server and kernel shut down in {time.monotonic() - t1:.1f}s")
        # Keep the server's log where CI keeps artifacts: it has the kernel's stderr too.
        try:
            (ARTIFACTS / f"jupyter-{flavor}.log").write_bytes(server.log_path.read_bytes())
        except OSError:
            pass
        if ok:  # do not hide the test's own failure behind a cleanup complaint
            assert not problems, "; ".join(problems)


# ------------------------------------------------------------------------------------------- the notebook copy


GATED_CELL = '''\
# Added by tests/test_browser.py: {n} jobs that each hold a worker until the test creates the gate file,
# so that jobs are still queued when the test clicks Pause, however slow the machine.
import jobsched as _bt_jobsched


def _bt_gated_job(i, gate):
    import os
    import time

    import jobsched

    deadline = time.monotonic() + 120  # never hold a worker forever if the test died
    step = 0
    while not os.path.exists(gate) and time.monotonic() < deadline:
        jobsched.progress(step % 100, 100, f"job {{i}} waits")  # a bar per busy worker on the dashboard
        step += 1
        time.sleep(0.02)
    time.sleep({job_s})
    print(f"gated job {{i}} done", flush=True)  # for the dashboard's worker output
    return i


_bt_futures = [_bt_jobsched.default_scheduler().submit(_bt_gated_job, i, {gate!r}) for i in range({n})]
%jobsched
'''


@dataclass
class PreparedNotebook:
    path: Path
    n_cells: int
    status_cell: int  # index of the cell that runs `%jobsched status`
    gated_cell: int  # index of the test's appended cell
    held_back: str  # the source the test runs itself at the end
    held_back_output: str  # what the original notebook saved as that cell's output ("" if nothing)


def _prepare_notebook(src: Path, dst: Path, gate: Path) -> PreparedNotebook:
    nb = json.loads(src.read_text())
    cells: list[dict[str, Any]] = nb["cells"]
    code = [i for i, c in enumerate(cells) if c["cell_type"] == "code"]
    assert code, f"{src} has no code cell"
    # Hold back the final `%jobsched stop`: it must run after the test's checks, not during Run All.
    last = cells[code[-1]]
    lines = _source(last).splitlines(keepends=True)
    stop_lines = [i for i, line in enumerate(lines) if line.strip() == "%jobsched stop"]
    assert stop_lines, f"the last code cell of {src.name} does not run `%jobsched stop`: {_source(last)!r}"
    # Its saved output (nbval checks it): the typed cell must print the same, numbers aside.
    held_back_output = "".join(_source({"source": o.get("text", "")}) for o in last.get("outputs", [])
                               if o.get("output_type") == "stream")
    rest = [line for i, line in enumerate(lines) if i not in stop_lines]
    if any(line.strip() and not line.lstrip().startswith("#") for line in rest):
        last["source"] = "".join(rest)
    else:  # nothing but comments is left: drop the cell
        del cells[code[-1]]
    # Saved outputs and widget state would show stale text (or "model not found" for old widgets) before
    # anything runs: start from a clean notebook, as a user who clears outputs would.
    for c in cells:
        if c["cell_type"] == "code":
            c["outputs"], c["execution_count"] = [], None
    nb.get("metadata", {}).pop("widgets", None)
    status = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and "%jobsched status" in _source(c)]
    assert status, f"{src.name} has no `%jobsched status` cell"
    cells.append({
        "cell_type": "code", "execution_count": None, "id": "jobsched-browser-test-gated", "metadata": {},
        "outputs": [], "source": GATED_CELL.format(n=N_GATED, gate=str(gate), job_s=GATED_JOB_S),
    })
    dst.write_text(json.dumps(nb, indent=1))
    return PreparedNotebook(dst, len(cells), status[-1], len(cells) - 1, "%jobsched stop", held_back_output)


# ------------------------------------------------------------------------------------------------ the browser


@contextmanager
def chromium_page(profile: Path) -> Iterator[Page]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1200}, timeout=60_000,
        )
        try:
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            ctx.close()


# Reads one dashboard: counts as displayed text (an input's value if the count is an input widget), worker rows.
READ_DASHBOARD_JS = """
(root) => {
  const text = (el) => {
    if (!el) return null;
    const input = el.querySelector('input');
    return (input ? input.value : el.textContent).trim();
  };
  const r = {};
  // "done" reads the succeeded count: these runs have no failed, cancelled or journaled job.
  for (const [k, css] of [['queued', 'queued'], ['active', 'active'], ['done', 'succeeded'], ['failed', 'failed']])
    r[k] = text(root.querySelector('.jobsched-' + css));
  // One string per row, its cells joined by " | " (textContent alone would glue "0" and "16248" together).
  r.rows = Array.from(root.querySelectorAll('.jobsched-workers tr.jobsched-worker'))
    .map(tr => Array.from(tr.cells).map(td => td.textContent.trim()).join(' | '));
  r.status = text(root.querySelector('.jobsched-status'));
  r.state = text(root.querySelector('.jobsched-state'));
  // The overall bar's finished parts (every part but "active"), as the width they fill: "100%" when full.
  const parts = Array.from(root.querySelectorAll('.jobsched-progress .jobsched-progress-part'))
    .filter(p => p.dataset.part !== 'active');
  r.progress = parts.length ? Math.round(parts.reduce((sum, p) => sum + parseFloat(p.style.width), 0)) + '%' : null;
  const log = root.querySelector('.jobsched-log');
  r.log = log ? log.textContent : null;
  // One <progress> per busy worker in the table; how many carry a value (a job that reported a total).
  const bars = Array.from(root.querySelectorAll('.jobsched-workers progress.jobsched-worker-progress'));
  r.worker_bars = bars.length;
  r.worker_bars_with_value = bars.filter(b => b.hasAttribute('value')).length;
  r.cancel_buttons = root.querySelectorAll('button.jobsched-cancel').length;
  r.cancel_enabled = root.querySelectorAll('button.jobsched-cancel:not(:disabled)').length;
  const pause = root.querySelector('.jobsched-pause');
  r.pause_disabled = pause ? pause.disabled === true : null;
  return r;
}
"""


@dataclass
class Dash:
    queued: int
    active: int
    done: int
    failed: int
    rows: list[str]
    status: str
    state: str
    progress: str | None  # the bar's width, "100%" when full
    log: str | None
    pause_disabled: bool | None
    worker_bars: int  # <progress class="jobsched-worker-progress"> elements: one per busy worker
    worker_bars_with_value: int
    cancel_buttons: int
    cancel_enabled: int


def read_dashboard(dash: Locator) -> Dash:
    raw = dash.evaluate(READ_DASHBOARD_JS)
    counts: dict[str, int] = {}
    for k in ("queued", "active", "done", "failed"):
        v = raw[k]
        assert v is not None, f"the dashboard has no .jobsched-{k} element"
        assert re.fullmatch(r"\d+", v), f".jobsched-{k} should display a plain integer, shows {v!r}"
        counts[k] = int(v)
    return Dash(**counts, rows=[r.strip() for r in raw["rows"]], status=raw["status"] or "", state=raw["state"] or "",
                progress=raw["progress"], log=raw["log"],
                pause_disabled=raw["pause_disabled"], worker_bars=raw["worker_bars"],
                worker_bars_with_value=raw["worker_bars_with_value"], cancel_buttons=raw["cancel_buttons"],
                cancel_enabled=raw["cancel_enabled"])


# JupyterLab and Notebook 7 share these: code cells with prompts "[ ]:", "[*]:" (running or queued), "[3]:".
PROMPTS_JS = """
() => Array.from(document.querySelectorAll('.jp-Notebook .jp-Cell')).map(c =>
  c.classList.contains('jp-CodeCell') ? (c.querySelector('.jp-InputPrompt')?.textContent || '').trim() : null)
"""


def _page_text(page: Page) -> str:
    text: str = page.evaluate("() => document.body.innerText")
    return text


def _check_no_errors(page: Page, where: str) -> None:
    text = _page_text(page)
    for bad in WIDGET_ERRORS:
        assert bad not in text, f"{where}: the page shows {bad!r}:\n{_around(text, bad)}"
    assert "Traceback (most recent call last)" not in text, \
        f"{where}: a cell raised:\n{_around(text, 'Traceback (most recent call last)')}"


def _around(text: str, needle: str, width: int = 600) -> str:
    i = text.find(needle)
    return text[max(0, i - width):i + width]


def _wait_cells_done(page: Page, n_cells: int, timeout: float) -> list[str | None]:
    """Wait until every code cell shows an execution count; fail early if Run All stopped at an error."""
    stopped_since: float | None = None

    def read() -> list[str | None]:
        prompts: list[str | None] = page.evaluate(PROMPTS_JS)
        return prompts

    deadline = time.monotonic() + timeout
    while True:
        prompts = read()
        code = [p for p in prompts if p is not None]
        if len(prompts) == n_cells and code and all(re.fullmatch(r"\[\d+\]:", p) for p in code):
            return prompts
        # Run All stops at the first cell that raises: nothing runs, some cells never will.
        if code and not any("*" in p for p in code) and any(re.fullmatch(r"\[\d+\]:", p) for p in code):
            stopped_since = stopped_since or time.monotonic()
            if time.monotonic() - stopped_since > 3:
                _check_no_errors(page, "Run All stopped early")
                raise AssertionError(f"Run All stopped before the last cell; prompts: {prompts}")
        else:
            stopped_since = None
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for all cells to run; prompts: {prompts}")
        page.wait_for_timeout(200)


def _run_all_cells(page: Page) -> None:
    """Run → Run All Cells, through the menu bar, as a user does (same menu in JupyterLab and Notebook 7)."""
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^\s*Run\s*$")).first.click()
    label = page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^\s*Run All Cells\s*$"))
    item = page.locator(".lm-Menu-item", has=label)
    item.wait_for(state="visible", timeout=10_000)
    assert "lm-mod-disabled" not in (item.get_attribute("class") or ""), "Run All Cells is disabled in the menu"
    item.click()


def _type_new_cell_and_run(page: Page, after: Locator, source: str) -> None:
    """Insert a code cell below ``after`` with the keyboard (Esc, B, Enter), type ``source``, Shift+Enter."""
    after.locator(".jp-InputPrompt").click()  # selects the cell without entering the editor
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    page.keyboard.type(source)
    page.keyboard.press("Shift+Enter")


def _wait_kernel_connected(server: JupyterServer, page: Page, nb_name: str) -> None:
    """The page's session has an idle kernel with the page's websocket attached (so Run All will not race it)."""
    def read() -> list[dict[str, Any]]:
        sessions: list[dict[str, Any]] = server.api("GET", "/api/sessions")
        return sessions

    def ok(sessions: list[dict[str, Any]]) -> bool:
        return any(s.get("path", "").endswith(nb_name) and s["kernel"]["execution_state"] == "idle"
                   and s["kernel"].get("connections", 0) >= 1 for s in sessions)

    _poll(read, ok, 60, "the notebook's kernel to start and connect", page)


# --------------------------------------------------------------------------------------------------- the test


@pytest.mark.timeout(170)
@pytest.mark.parametrize("flavor", ["lab", "notebook"])
def test_dashboard_in_browser(flavor: str, tmp_path: Path) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        conftest.skip_or_fail(f"Debian's Chromium is not at {CHROMIUM} (apt-get install chromium)")
    for module in ("playwright", "jupyterlab", "ipywidgets") + (("notebook",) if flavor == "notebook" else ()):
        try:
            __import__(module)
        except ImportError:
            conftest.skip_or_fail(f"{module} is not installed (pip install 'jobsched[browser]')")
    if not NOTEBOOK.exists():
        conftest.skip_or_fail(f"{NOTEBOOK} does not exist")
    ARTIFACTS.mkdir(exist_ok=True)
    for stale in ARTIFACTS.glob(f"*-{flavor}*"):  # a failure picture from an earlier run would mislead
        stale.unlink()

    root, home = tmp_path / "root", tmp_path / "home"
    root.mkdir()
    gate = tmp_path / "gate"
    nb = _prepare_notebook(NOTEBOOK, root / NOTEBOOK.name, gate)
    t0 = time.monotonic()

    with jupyter_server(flavor, root, home) as server, chromium_page(tmp_path / "chromium-profile") as page:
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        try:
            _drive(flavor, server, page, nb, gate)
        except BaseException:
            # What the page looked like when it failed.
            try:
                page.screenshot(path=str(ARTIFACTS / f"failure-{flavor}.png"), full_page=True)
            except Exception:
                pass
            raise
        finally:
            # The gate opens whatever happened, so no worker stays parked on it while things shut down.
            gate.touch()
            # What the browser complained about (JupyterLab's own warnings are noise; widget errors are not).
            (ARTIFACTS / f"browser-console-{flavor}.log").write_text("\n".join(console) + "\n")
    print(f"browser test ({flavor}) took {time.monotonic() - t0:.1f}s, shutdown included")


def _drive(flavor: str, server: JupyterServer, page: Page, nb: PreparedNotebook, gate: Path) -> None:
    t0 = time.monotonic()

    def phase(what: str) -> None:  # printed: pytest shows it on failure, so a slow CI run says where time went
        print(f"[{flavor} {time.monotonic() - t0:5.1f}s] {what}")

    name = nb.path.name
    path = f"/lab/tree/{name}" if flavor == "lab" else f"/notebooks/{name}"
    page.goto(f"{server.url}{path}?token={server.token}", wait_until="domcontentloaded", timeout=60_000)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(state="visible", timeout=60_000)
    _poll(lambda: page.locator(".jp-Notebook .jp-Cell").count(), lambda n: n == nb.n_cells, 30,
          f"the notebook's {nb.n_cells} cells to render", page)
    _wait_kernel_connected(server, page, name)
    phase("page loaded, kernel connected")

    _run_all_cells(page)
    _wait_cells_done(page, nb.n_cells, timeout=90)
    phase("Run All Cells finished")
    server.track()
    cells = page.locator(".jp-Notebook .jp-Cell")

    # The `%jobsched status` line, printed after the notebook's own jobs finished.
    status_text = cells.nth(nb.status_cell).locator(".jp-OutputArea").inner_text()
    m = STATUS_RE.search(status_text)
    assert m, f"no `jobsched: N workers, ...` line in the `%jobsched status` output: {status_text!r}"
    n_workers, queued, active, done, failed = map(int, m.groups())
    assert n_workers >= 1, m.group(0)
    n_notebook_jobs = queued + active + done + failed  # the notebook's jobs, finished or not when it printed
    expect_done = n_notebook_jobs - failed

    # Every dashboard rendered as a widget, none as an error.
    dashboards = page.locator(".jobsched-dashboard")
    _poll(dashboards.count, lambda n: n >= 2, 30, "the notebook's dashboard and the test cell's dashboard", page)
    _check_no_errors(page, "after Run All")
    ours = cells.nth(nb.gated_cell).locator(".jobsched-dashboard")
    ours.wait_for(state="visible")
    first = dashboards.first  # the quick-start's own dashboard (the test's cell comes last)

    # The notebook's jobs are all done, the gated ones hold every worker and the rest wait in the queue.
    busy = min(n_workers, N_GATED)
    _poll(lambda: read_dashboard(first), lambda d: d.done >= expect_done, 30,
          f"the quick-start dashboard's done count to reach the notebook's {expect_done} jobs", page)
    d = _poll(lambda: read_dashboard(ours),
              lambda d: (d.done, d.active, d.queued, len(d.rows)) == (expect_done, busy, N_GATED - busy, n_workers),
              60, f"{expect_done} done, {busy} active, {N_GATED - busy} queued, {n_workers} worker rows", page)
    problem = _rows_problem(server, d.rows)
    assert problem is None, problem
    # Each busy worker shows a progress bar with the job's report, and a cancel button: they are in
    # the screenshot.
    d = _poll(lambda: read_dashboard(ours), lambda d: d.worker_bars_with_value == busy and d.worker_bars == busy
              and d.cancel_enabled == busy and all("waits" in row for row in d.rows[:busy]), 30,
              f"{busy} worker progress bars with a value, and {busy} enabled cancel buttons", page)
    assert d.cancel_buttons == n_workers, d
    ours.screenshot(path=str(ARTIFACTS / f"dashboard-{flavor}-busy.png"))  # the workers' bars, while they run
    page.screenshot(path=str(ARTIFACTS / f"notebook-{flavor}.png"), full_page=True)
    first.screenshot(path=str(ARTIFACTS / f"dashboard-{flavor}.png"))
    phase("dashboards checked")

    # Pause: once it took effect, the running jobs finish and nothing else starts while jobs are queued.
    _check_button(ours, "pause", "Pause").click()
    _wait_paused_shown(page, ours)
    gate.touch()
    d = _poll(lambda: read_dashboard(ours), lambda d: d.active == 0, 30, "the running jobs to finish", page)
    assert d.queued > 0, f"Pause did not stop dispatch: every gated job ran ({d})"
    held = (d.done, d.queued)
    end = time.monotonic() + PAUSE_HOLD_S
    while time.monotonic() < end:
        now = read_dashboard(ours)
        assert (now.done, now.queued, now.active) == (*held, 0), f"jobs ran while paused: {d} -> {now}"
        page.wait_for_timeout(200)

    phase("pause held")
    # Resume: the queued jobs run to the end.
    _check_button(ours, "resume", "Resume").click()
    total = expect_done + N_GATED
    d = _poll(lambda: read_dashboard(ours), lambda d: (d.done, d.queued, d.active) == (total, 0, 0), 60,
              f"all {total} jobs done after Resume", page)
    # The progress bar fills up, and what the jobs printed shows in the dashboard's worker output.
    d = _poll(lambda: read_dashboard(ours), lambda d: d.progress == "100%" and "gated job" in (d.log or ""), 10,
              "a full progress bar and the gated jobs' output in .jobsched-log", page)
    # Two dashboards of one scheduler agree (the quick-start's shows the default scheduler too).
    _poll(lambda: read_dashboard(first).done, lambda n: n == total, 10, "the quick-start dashboard to agree", page)

    phase("resumed, all jobs done")
    # Scale + adds a worker row, Scale − takes it away again.
    _check_button(ours, "scale-up", "Scale +").click()
    _poll(lambda: read_dashboard(ours).rows, lambda r: len(r) == n_workers + 1 and not _rows_problem(server, r), 30,
          f"{n_workers + 1} worker rows, each with the pid of a live worker", page)
    _check_button(ours, "scale-down", "Scale −").click()
    _poll(lambda: len(read_dashboard(ours).rows), lambda n: n == n_workers, 30, "a worker row less", page)
    _check_button(ours, "stop", "Stop")
    phase("scaled up and down")
    ours.screenshot(path=str(ARTIFACTS / f"dashboard-{flavor}-after-resume.png"))
    _check_no_errors(page, "after the checks")

    # The held-back `%jobsched stop`, typed into a new cell: the workers go, and the dashboard says so.
    workers = _workers(server)
    _type_new_cell_and_run(page, cells.nth(nb.gated_cell), nb.held_back)
    typed = cells.nth(nb.n_cells)  # Shift+Enter on the last cell also adds an empty one below it: ignore that
    _poll(lambda: typed.locator(".jp-InputPrompt").inner_text().strip(), lambda p: bool(re.fullmatch(r"\[\d+\]:", p)),
          30, "the typed `%jobsched stop` cell to run", page)
    assert typed.locator(".jp-InputArea-editor").inner_text().strip() == nb.held_back, "typing the cell went wrong"
    if nb.held_back_output.strip():
        shown = typed.locator(".jp-OutputArea").inner_text().strip()
        pattern = r"\d+".join(re.escape(part) for part in re.split(r"\d+", nb.held_back_output.strip()))
        assert re.fullmatch(pattern, shown), \
            f"`%jobsched stop` printed {shown!r}; the notebook saved {nb.held_back_output.strip()!r}"
    _poll(lambda: len(read_dashboard(ours).rows), lambda n: n == 0, 30, "no worker row after `%jobsched stop`", page)
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not [p for p in alive if helpers.is_live(p)], f"workers still running after `%jobsched stop`: {alive}"
    _check_no_errors(page, "after `%jobsched stop`")
    phase("stopped")


def _check_button(dash: Locator, cls: str, label: str) -> Locator:
    button = dash.locator(f".jobsched-{cls}")
    assert button.count() == 1, f"the dashboard should have one .jobsched-{cls} button"
    text = button.inner_text().strip()
    assert text == label, f".jobsched-{cls} should read {label!r}, reads {text!r}"
    return button


def _wait_paused_shown(page: Page, dash: Locator) -> None:
    """Wait until the page shows the pause took effect (the kernel handled the click): the state or status line
    says paused, or the Pause button is disabled. Opening the gate earlier could let a job start before it."""
    _poll(lambda: read_dashboard(dash),
          lambda d: "paus" in f"{d.state} {d.status}".lower() or d.pause_disabled is True, 15,
          "the dashboard to show that dispatch is paused", page)


def _workers(server: JupyterServer) -> list[psutil.Process]:
    """The jobsched worker processes below the kernel (``python -m jobsched.worker``)."""
    found = []
    for p in server.track():
        try:
            if "jobsched.worker" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:
            pass
    return found


def _rows_problem(server: JupyterServer, rows: list[str]) -> str | None:
    """None if each worker row shows the pid of a live worker process below the kernel (the table tells the
    truth), else what is wrong. A worker still starting has no pid yet: callers poll until it has one."""
    live = {p.pid for p in _workers(server)}
    if not live:
        return "no jobsched worker process runs below the kernel"
    for row in rows:
        numbers = {int(n) for n in re.findall(r"\d+", row)}
        if not numbers & live:
            return f"worker row {row!r} shows no pid of a live worker (workers: {sorted(live)})"
    return None


# ----------------------------------------------------------------------------------------- the task timeline

TIMELINE_CELL = '''\
# Written by tests/test_browser.py: a run with failures, a timeout and a cancelled job; gated jobs keep it live.
import os
import time

from jobsched import Scheduler


def tl_work(i):
    import time
    time.sleep(0.05 + (i % 4) * 0.05)
    if i % 10 == 9:
        raise ValueError(f"job {{i}} fails on purpose")
    return i


def tl_hang(seconds):
    import time
    time.sleep(seconds)


def tl_gated(gate):
    import os
    import time
    deadline = time.monotonic() + 120
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)
    return "opened"


sched = Scheduler()
sched.start(3, wait=False)
board = sched.dashboard()
display(board)
doomed = sched.submit(tl_hang, 120, cost=-2)
late = sched.submit(tl_hang, 120, cost=-2, timeout=1.0)
futures = [sched.submit(tl_work, i) for i in range(30)]
gated = [sched.submit(tl_gated, {gate!r}, cost=5) for _ in range(2)]
while not doomed.running():
    time.sleep(0.05)
time.sleep(0.5)
doomed.cancel()
'''

READ_TIMELINE_JS = """
(root) => {
  const svg = root.querySelector('.jobsched-timeline svg.jobsched-timeline-svg');
  const bars = svg ? Array.from(svg.querySelectorAll('rect.jobsched-bar')) : [];
  const outcomes = {};
  for (const b of bars) outcomes[b.dataset.outcome] = (outcomes[b.dataset.outcome] || 0) + 1;
  const box = svg ? svg.getBoundingClientRect() : null;
  const first = bars.length ? bars[0].getBoundingClientRect() : null;
  const input = root.querySelector('.jobsched-succeeded input');
  const done = root.querySelector('.jobsched-succeeded');
  return {
    svg: !!svg, bars: bars.length, outcomes, running: svg ? svg.querySelectorAll('rect.jobsched-running').length : 0,
    width: box ? box.width : 0, bar_width: first ? first.width : 0,
    title: bars.length ? bars[0].querySelector('title').textContent : '',
    throughput: !!root.querySelector('.jobsched-throughput svg.jobsched-throughput-svg polyline'),
    done: done ? (input ? input.value : done.textContent).trim() : null,
  };
}
"""


@pytest.mark.timeout(170)
@pytest.mark.parametrize("flavor", ["lab", "notebook"])
def test_timeline_in_browser(flavor: str, tmp_path: Path) -> None:
    """The dashboard's timeline in Chromium: its job bars are in the page during a run (with a failure, a
    timeout, a cancelled job and a running one) and after it; screenshots go to test-artifacts/*timeline*."""
    if not os.access(CHROMIUM, os.X_OK):
        conftest.skip_or_fail(f"Debian's Chromium is not at {CHROMIUM} (apt-get install chromium)")
    for module in ("playwright", "jupyterlab", "ipywidgets") + (("notebook",) if flavor == "notebook" else ()):
        try:
            __import__(module)
        except ImportError:
            conftest.skip_or_fail(f"{module} is not installed (pip install 'jobsched[browser]')")
    ARTIFACTS.mkdir(exist_ok=True)
    for stale in ARTIFACTS.glob(f"*timeline-{flavor}*"):
        stale.unlink()
    root, home = tmp_path / "root", tmp_path / "home"
    root.mkdir()
    gate = tmp_path / "gate"
    name = "timeline.ipynb"
    cell = {"cell_type": "code", "execution_count": None, "id": "jobsched-timeline", "metadata": {}, "outputs": [],
            "source": TIMELINE_CELL.format(gate=str(gate))}
    (root / name).write_text(json.dumps({"cells": [cell], "metadata": {"kernelspec": {
        "display_name": "Python 3", "language": "python", "name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}))

    with jupyter_server(flavor, root, home) as server, chromium_page(tmp_path / "chromium-profile") as page:
        try:
            path = f"/lab/tree/{name}" if flavor == "lab" else f"/notebooks/{name}"
            page.goto(f"{server.url}{path}?token={server.token}", wait_until="domcontentloaded", timeout=60_000)
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(state="visible", timeout=60_000)
            _wait_kernel_connected(server, page, name)
            _run_all_cells(page)
            _wait_cells_done(page, 1, timeout=90)
            server.track()
            dash = page.locator(".jobsched-dashboard").first
            dash.wait_for(state="visible")

            def read() -> dict[str, Any]:
                raw: dict[str, Any] = dash.evaluate(READ_TIMELINE_JS)
                return raw

            # During the run: done, failed, timed-out and cancelled bars, and the gated jobs' open bars.
            live = _poll(read, lambda r: {"done", "failed", "timeout", "cancelled"} <= r["outcomes"].keys()
                         and r["running"] >= 1 and r["throughput"], 60,
                         "bars of every outcome and a running job's open bar in the timeline", page)
            assert live["width"] > 300 and live["bar_width"] >= 1, live
            assert re.fullmatch(r"job \d+ · cost -?[\d.]+ · [\d.]+ s · w\d · \w+", live["title"]), live["title"]
            _check_no_errors(page, "during the run")
            dash.screenshot(path=str(ARTIFACTS / f"dashboard-timeline-{flavor}-during.png"))
            # After it: every job is a bar, nothing runs.
            gate.touch()
            # 34 jobs ended, 29 of them succeeded (the count beside the failed, timed-out and cancelled ones).
            after = _poll(read, lambda r: r["done"] == "29" and r["running"] == 0 and r["bars"] == 34, 60,
                          "29 jobs succeeded, 34 bars and no open bar", page)
            assert after["outcomes"]["done"] == 30 - 3 + 2, after
            dash.screenshot(path=str(ARTIFACTS / f"dashboard-timeline-{flavor}-after.png"))
            _type_new_cell_and_run(page, page.locator(".jp-Notebook .jp-Cell").first, "sched.close()")
            _check_no_errors(page, "after the run")
        except BaseException:
            try:
                page.screenshot(path=str(ARTIFACTS / f"failure-timeline-{flavor}.png"), full_page=True)
            except Exception:
                pass
            raise
        finally:
            gate.touch()
