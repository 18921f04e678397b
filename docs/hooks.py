"""MkDocs hook: documentation pages reuse sections of README.md, so the site and the README never disagree.

A line ``<!-- README: Guarantees -->`` on a page is replaced by the body of the README section whose heading is
``Guarantees`` (any level), up to the next heading of the same or a higher level. A section that no longer exists
fails the build, so renaming a README heading cannot leave an empty page behind.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

MARKER = re.compile(r"^<!-- README: (?P<title>.+?) -->$", re.MULTILINE)
HEADING = re.compile(r"^(?P<hashes>#{1,6}) (?P<title>.+?)\s*$")


def readme_section(readme: str, title: str) -> str:
    """Return the body of the section headed ``title`` (without its heading).

    Args:
        readme: the Markdown text of README.md.
        title: the heading's text, as written after the ``#`` marks.

    Returns:
        The lines after the heading, up to the next heading of the same or a higher level.

    Raises:
        PluginError: no heading reads ``title``.
    """
    lines = readme.splitlines()
    in_code = False
    start: int | None = None
    level = 0
    for i, line in enumerate(lines):
        if line.startswith("```"):
            in_code = not in_code
            continue
        match = None if in_code else HEADING.match(line)
        if match is None:
            continue
        if start is None:
            if match["title"] == title:
                start, level = i + 1, len(match["hashes"])
        elif len(match["hashes"]) <= level:
            return "\n".join(lines[start:i]).strip() + "\n"
    if start is None:
        raise PluginError(f"README.md has no section headed {title!r}; fix the marker or the README heading")
    return "\n".join(lines[start:]).strip() + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace each README marker on a page by that README section."""
    if MARKER.search(markdown) is None:
        return markdown
    readme = (Path(config["config_file_path"]).parent / "README.md").read_text(encoding="utf-8")
    # The README links to images as docs/img/...: on a page of the site they are img/...
    readme = readme.replace("](docs/img/", "](img/")
    return MARKER.sub(lambda m: readme_section(readme, m["title"]), markdown)
