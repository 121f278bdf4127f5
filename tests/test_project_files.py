"""The files people look for next to the code: a licence matching the metadata, a changelog
that describes the version being released."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import h3green

ROOT = Path(__file__).resolve().parent.parent


def test_license_file_is_the_mit_licence_the_metadata_declares() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["metadata"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in text


def test_changelog_has_a_section_for_the_current_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## (\d+\.\d+\.\d+)", changelog, re.MULTILINE)
    assert headings, "CHANGELOG.md has no version headings"
    assert headings[0] == h3green.__version__, "the newest entry must be the version in h3green/__init__.py"


def test_version_is_bumped_for_this_release() -> None:
    assert h3green.__version__ == "0.2.0"


def test_contributing_maps_every_module() -> None:
    # The module map is only useful while it is whole: a new module gets its line.
    text = (ROOT / "CONTRIBUTING.md").read_text()
    mapped = set(re.findall(r"^\| `([\w/]+\.py)` \|", text, re.MULTILINE))
    package = ROOT / "h3green"
    modules = {
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if path.parent.name != "utils"  # one row for the utilities package
    }
    assert modules - mapped == set(), "add these to CONTRIBUTING.md's module map"
    assert mapped - modules == set(), "these are in CONTRIBUTING.md's module map but gone"
