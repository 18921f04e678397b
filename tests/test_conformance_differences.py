"""The skipped tests of CPython's suite are documented word for word in docs/coming-from-processpool.md."""

from __future__ import annotations

import os

from conformance_differences import DIFFERENCES, NOT_APPLICABLE

PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                    "coming-from-processpool.md")


def _documented(heading: str) -> list[str]:
    with open(PAGE, encoding="utf-8") as f:
        text = f.read()
    section = text.split(f"### {heading}\n", 1)[1].split("\n#", 1)[0]
    return [line for line in section.splitlines() if line.startswith("- `")]


def test_the_docs_list_the_deliberate_differences_the_suite_skips() -> None:
    assert _documented("Deliberate differences") == [f"- `{k}`: {v}" for k, v in DIFFERENCES.items()]


def test_the_docs_list_the_process_pool_tests_the_suite_skips() -> None:
    assert _documented("Tests of ProcessPoolExecutor itself") == [f"- `{k}`: {v}" for k, v in NOT_APPLICABLE.items()]


def test_every_skip_has_a_reason_and_none_is_listed_twice() -> None:
    assert all(reason.strip() for reason in (*DIFFERENCES.values(), *NOT_APPLICABLE.values()))
    assert not set(DIFFERENCES) & set(NOT_APPLICABLE)
