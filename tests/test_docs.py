"""The documentation site builds in strict mode, and its API reference is made from the docstrings."""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import conftest
import pytest

import jobsched

ROOT = Path(__file__).resolve().parent.parent

# MkDocs Material 9.8, mkdocstrings 1.0 and griffe 2 need Python 3.11; the docs extra installs nothing on 3.10.
pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="the docs toolchain needs Python 3.11 or newer")


def need_mkdocs() -> None:
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module) is None:
            conftest.skip_or_fail(f"{module} is not installed (pip install -e '.[docs]')")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once by ``mkdocs build --strict`` (any warning fails it) into a temporary folder."""
    need_mkdocs()
    out = tmp_path_factory.mktemp("site")
    # NO_MKDOCS_2_WARNING: Material's notice about its end of life, printed on every build.
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def hooks() -> ModuleType:
    """docs/hooks.py, the MkDocs hook through which pages reuse README.md's sections."""
    need_mkdocs()
    spec = importlib.util.spec_from_file_location("jobsched_docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def page_text(site: Path, page: str) -> str:
    """A page's text: tags and scripts left out, entities decoded, whitespace collapsed."""
    markup = (site / page / "index.html").read_text(encoding="utf-8")
    markup = re.sub(r"<script.*?</script>", " ", markup, flags=re.DOTALL)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", markup)))


def test_the_api_page_documents_every_public_name(site: Path) -> None:
    html = (site / "api" / "index.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'id="(jobsched\.[\w.]+)"', html))
    # `jobsched.X`, or `jobsched.<public module>.X` where the module has the name's own name (remote_call).
    missing = [name for name in jobsched.__all__
               if f"jobsched.{name}" not in anchors and f"jobsched.{name}.{name}" not in anchors]
    assert missing == []
    assert "jobsched.dask.DaskBackend" in anchors
    assert "jobsched.Scheduler.add_job" in anchors


def test_the_api_page_is_made_from_the_docstrings(site: Path) -> None:
    text = page_text(site, "api")
    # Scheduler.add_job's summary line and one of its Args, as the docstring writes them.
    assert "Queue a job; it goes to the next free worker after every job of lower cost" in text
    assert "priority, lowest first; equal costs run in the order they were added." in text
    # The Dask backend is documented from its source, without importing dask.
    assert "Run a Scheduler's jobs on the threads of a Dask cluster." in text


def test_the_guarantees_page_names_tests_that_exist(site: Path) -> None:
    guarantees = page_text(site, "guarantees")
    named = set(re.findall(r"tests/(test_\w+)\.py::(test_\w+)", guarantees))
    assert len(named) > 10
    missing = [f"{module}::{name}" for module, name in sorted(named)
               if not re.search(rf"^def {name}\(", (ROOT / "tests" / f"{module}.py").read_text(encoding="utf-8"),
                                re.MULTILINE)]
    assert missing == []


# One page per feature, each in the navigation: (page, a phrase it must explain).
FEATURE_PAGES = [
    ("resume", "python -m jobsched.journal"),
    ("cancel", "future.cancel()"),
    ("progress", "tqdm"),
    ("large-data", "/dev/shm"),
    ("timeline", "Journal(path).plot()"),
    ("migrating", "ProcessPoolExecutor"),
    ("guarantees", "exactly once"),
    ("performance", "prefetch"),
    ("architecture", "_core/"),
]


@pytest.mark.parametrize(("page", "phrase"), FEATURE_PAGES, ids=[p for p, _ in FEATURE_PAGES])
def test_each_feature_has_a_page_in_the_navigation(site: Path, page: str, phrase: str) -> None:
    assert phrase in page_text(site, page)
    home = (site / "index.html").read_text(encoding="utf-8")
    assert f'href="{page}/"' in home, f"{page} is not in the site's navigation"


def test_a_readme_section_ends_at_the_next_heading_of_its_level(hooks: ModuleType) -> None:
    readme = "# T\n\n## A\n\na\n\n### A.1\n\n```\n## not a heading\n```\n\n## B\n\nb\n"
    assert hooks.readme_section(readme, "A") == "a\n\n### A.1\n\n```\n## not a heading\n```\n"
    assert hooks.readme_section(readme, "B") == "b\n"
    with pytest.raises(hooks.PluginError, match="no section headed 'C'"):
        hooks.readme_section(readme, "C")
