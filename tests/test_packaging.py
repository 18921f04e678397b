"""The wheel is what a user installs: built from this checkout, installed (not editable) into a clean virtual
environment, it runs the manual's examples from a folder that has no jobsched source in sight."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import conftest
import pytest

ROOT = Path(__file__).resolve().parent.parent

# About 10 s with a warm pip cache (not `slow`); the first build on a fresh machine downloads setuptools.
pytestmark = pytest.mark.timeout(600)


def run(argv: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def clean_environ() -> dict[str, str]:
    """This process's environment without anything that would put the checkout on the import path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP",
                                                            "PYTHONSAFEPATH", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built by ``python -m build`` (in isolated build environments)."""
    if importlib.util.find_spec("build") is None:
        conftest.skip_or_fail("build is not installed (pip install -e '.[test]')")
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=out, timeout=600)
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed (cloudpickle comes from the package index); its python."""
    home = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(home / "env")], cwd=home, timeout=120, env=clean_environ())
    python = home / "env" / "bin" / "python"
    (wheel,) = dist.glob("jobsched-*.whl")
    run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], cwd=home, timeout=600, env=clean_environ())
    return python


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A working folder outside the checkout."""
    assert not tmp_path.resolve().is_relative_to(ROOT)
    return tmp_path


def test_the_wheel_holds_the_package_its_types_and_its_license_but_no_tests(dist: Path) -> None:
    (wheel,) = dist.glob("jobsched-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "jobsched/py.typed" in names
    assert "jobsched/__init__.py" in names
    assert "jobsched/worker/__main__.py" in names
    assert "jobsched/examples/remote_call.py" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert [name for name in names if name.startswith(("tests/", "benchmarks/", "docs/", "notebooks/"))] == []
    assert [name for name in names if not name.startswith(("jobsched/", "jobsched-"))] == []
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata
    assert "Requires-Dist: cloudpickle" in metadata
    for version in ("3.10", "3.11", "3.12", "3.13"):
        assert f"Classifier: Programming Language :: Python :: {version}" in metadata


def test_the_sdist_holds_the_license_and_the_readme(dist: Path) -> None:
    (sdist,) = dist.glob("jobsched-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "pyproject.toml", "jobsched/py.typed", "jobsched/__init__.py"} <= names


def test_the_installed_wheel_is_the_one_imported(installed: Path, outside: Path) -> None:
    code = "import jobsched, os, sys; print(jobsched.__file__); print([os.path.realpath(p) for p in sys.path if p])"
    file, path = run([str(installed), "-c", code], cwd=outside, timeout=60, env=clean_environ()).splitlines()
    assert Path(file).is_relative_to(installed.parent.parent)  # the venv's site-packages, not this checkout
    assert str(ROOT) not in path


def test_the_installed_wheel_runs_the_remote_call_example(installed: Path, outside: Path) -> None:
    out = run([str(installed), "-m", "jobsched.examples.remote_call"], cwd=outside, timeout=120, env=clean_environ())
    assert sorted(out.splitlines()) == sorted(["Hello, Alice!", "Hi, Bob!", "60.0", "360.0"])


def test_the_installed_wheel_runs_the_simple_example(installed: Path, outside: Path) -> None:
    out = run([str(installed), "-m", "jobsched.examples.simple"], cwd=outside, timeout=120, env=clean_environ())
    assert sorted(out.splitlines()) == sorted(f"{x} × {y} = {x * y}" for x in range(5) for y in range(5))


def test_the_installed_wheel_runs_a_worker_file_of_the_users(installed: Path, outside: Path) -> None:
    worker_file = outside / "squares.py"
    worker_file.write_text(textwrap.dedent("""\
        from jobsched import start_simple_server, start_simple_worker, this_file


        def worker():
            start_simple_worker(lambda n: n * n)


        if __name__ == "__main__":
            results = []
            start_simple_server(this_file(), list(range(10)), lambda n, square: results.append((n, square)),
                                n_workers=2)
            print(sorted(results))
        """))
    out = run([str(installed), str(worker_file)], cwd=outside, timeout=120, env=clean_environ())
    assert out.strip() == str([(n, n * n) for n in range(10)])

