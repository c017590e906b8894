"""What a new user reads before installing: how to install it today (it is not on PyPI
yet), and the license pyproject names, in a LICENSE file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_license_file_is_the_one_pyproject_names() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == {"text": "MIT"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert re.search(r"^Copyright \(c\) \d{4} fastapi-ratelimits engineers$", text, re.M)
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text


def test_the_readme_says_how_to_install_it_from_the_repository() -> None:
    quickstart = (ROOT / "README.md").read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert "not on PyPI yet" in quickstart
    assert 'pip install "fastapi-ratelimits @ git+' in quickstart
    assert 'pip install -e ".[demo]"' in quickstart
    # never the bare published-package command as the way to install it
    assert not re.search(r"^Install it \(`pip install fastapi-ratelimits`", quickstart, re.M)
