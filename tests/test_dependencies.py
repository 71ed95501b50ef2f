"""The declared dependency ranges hold what the suite runs on: each installed runtime and test
dependency is inside its range (so a lower bound is a version some run of the suite used), and
requirements-test.txt lists the `dev` extra of pyproject.toml. requirements.txt against
pyproject's runtime list: tests/test_packaging.py."""

import os
from importlib import metadata

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _project() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def _requirement_lines(name: str) -> list:
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        lines = [line.split("#", 1)[0].strip() for line in f]
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def _key(requirement: Requirement) -> tuple:
    return requirement.name.lower().replace("_", "-"), str(requirement.specifier)


@pytest.mark.parametrize("requirement", [*_project()["dependencies"],
                                         *_project()["optional-dependencies"]["dev"]])
def test_the_installed_version_is_in_the_declared_range(requirement):
    requirement = Requirement(requirement)
    installed = metadata.version(requirement.name)
    assert requirement.specifier.contains(installed, prereleases=True), \
        f"{requirement.name} {installed} is outside {requirement.specifier}"


def test_requirements_test_lists_the_dev_extra():
    dev = {_key(Requirement(r)) for r in _project()["optional-dependencies"]["dev"]}
    assert {_key(r) for r in _requirement_lines("requirements-test.txt")} == dev
    assert ("panopticapi-lite", ">=0.2") in dev  # the PQ tests' reference, not a runtime need
