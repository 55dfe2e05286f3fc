"""The pinned set is one set: requirements.txt, environment.yml and pyproject.toml agree."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            pins[requirement.name.lower()] = str(requirement.specifier)
    return pins


def requirements_pins():
    return _pins((ROOT / "requirements.txt").read_text().splitlines())


def environment_pins():
    text = (ROOT / "environment.yml").read_text()
    pip_block = text.split("- pip:", 1)[1]
    return _pins(re.findall(r"^\s+-\s+(\S+)\s*$", pip_block, flags=re.M))


def test_every_requirement_is_pinned_exactly():
    pins = requirements_pins()
    assert pins and all(spec.startswith("==") and spec.count("==") == 1 for spec in pins.values()), pins


def test_torch_is_the_offline_cpu_build_version():
    assert requirements_pins()["torch"] == "==2.13.0"


def test_environment_yml_installs_the_same_set():
    assert environment_pins() == requirements_pins()


def test_environment_yml_uses_python_311():
    assert re.search(r"^\s+-\s+python=3\.11\s*$", (ROOT / "environment.yml").read_text(), flags=re.M)


def test_pyproject_ranges_admit_the_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = requirements_pins()
    for line in project["dependencies"]:
        requirement = Requirement(line)
        pinned = pins[requirement.name.lower()].lstrip("=")
        assert requirement.specifier.contains(pinned), (line, pinned)


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()
