"""Check that every package of the lock installs from a wheel on every platform the course supports.

Usage: python tools/check_wheels.py [requirements.txt]   (`make check-wheels`; maintainers, network)

For Python 3.11 to 3.14 on Linux x86_64, macOS arm64 and Windows x86_64, each locked package
whose environment marker applies there must have a wheel for it (a pure-Python ``py3-none-any``
wheel counts) whose ``Requires-Python`` admits that Python. The release files are read from the
package index pip uses (``$PIP_INDEX_URL``, else PyPI), through its JSON Simple API (PEP 691).
Exits 1 and lists the gaps. Not part of `make test`: it needs the network.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms
from packaging.utils import canonicalize_name, parse_wheel_filename

PYTHONS = ((3, 11), (3, 12), (3, 13), (3, 14))
# platform name → (marker environment, wheel platform tags it accepts)
_MANYLINUX = ([f"manylinux_2_{minor}_x86_64" for minor in range(39, 4, -1)]
              + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"])
PLATFORMS = {
    "linux-x86_64": ({"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                      "os_name": "posix"}, _MANYLINUX),
    "macos-arm64": ({"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64",
                     "os_name": "posix"}, list(mac_platforms((14, 0), "arm64"))),
    "windows-x86_64": ({"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64",
                        "os_name": "nt"}, ["win_amd64"]),
}

Files = list[dict]  # each {"filename": ..., "requires-python": ... or None}


def read_lock(path: Path) -> list[tuple[str, str, Marker | None]]:
    """(name, version, marker) of every ``name==version`` line of a requirements file."""
    pins = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        [spec] = requirement.specifier
        if spec.operator != "==":
            raise ValueError(f"{path}: {line!r} is not pinned with ==")
        pins.append((canonicalize_name(requirement.name), spec.version, requirement.marker))
    return pins


def environment(python: tuple[int, int], platform: str) -> dict[str, str]:
    """The marker environment of CPython ``python`` on ``platform`` (a key of PLATFORMS)."""
    env = dict(PLATFORMS[platform][0])
    env.update(python_version=f"{python[0]}.{python[1]}", python_full_version=f"{python[0]}.{python[1]}.0",
               implementation_name="cpython", platform_python_implementation="CPython", extra="")
    return env


def supported_tags(python: tuple[int, int], platform: str) -> set[Tag]:
    platforms = PLATFORMS[platform][1]
    return (set(cpython_tags(python, platforms=platforms))
            | set(compatible_tags(python, f"cp{python[0]}{python[1]}", platforms=platforms)))


def has_wheel(files: Files, python: tuple[int, int], platform: str) -> bool:
    """Whether one of the release's files is a wheel that installs on ``python`` and ``platform``."""
    tags = supported_tags(python, platform)
    version = f"{python[0]}.{python[1]}.0"
    for file in files:
        if not file["filename"].endswith(".whl"):
            continue
        requires = file.get("requires-python")
        if requires and not SpecifierSet(requires).contains(version, prereleases=True):
            continue
        if tags & set(parse_wheel_filename(file["filename"])[3]):
            return True
    return False


def gaps(pins, release_files: Callable[[str, str], Files],
         pythons: Iterable[tuple[int, int]] = PYTHONS, platforms: Iterable[str] = tuple(PLATFORMS)) -> list[str]:
    """One line for every (package, Python, platform) where the lock needs a wheel that does not exist."""
    problems = []
    for name, version, marker in pins:
        files = None
        for platform in platforms:
            missing = []
            for python in pythons:
                if marker is not None and not marker.evaluate(environment(python, platform)):
                    continue
                files = release_files(name, version) if files is None else files
                if not has_wheel(files, python, platform):
                    missing.append(f"{python[0]}.{python[1]}")
            if missing:
                sdist = any(not f["filename"].endswith(".whl") for f in files or [])
                problems.append(f"{name}=={version}: no wheel for Python {', '.join(missing)} on {platform}"
                                f"{' (sdist only there: builds from source)' if sdist else ''}")
    return problems


def index_url() -> str:
    """The index pip installs from: $PIP_INDEX_URL, else pip's default (PyPI's Simple API)."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"].rstrip("/")
    from pip._internal.models.index import PyPI  # pip's own default, so we never hard-code it

    return PyPI.simple_url.rstrip("/")


def simple_api(index: str) -> Callable[[str, str], Files]:
    """release_files(name, version) from a PEP 691 JSON Simple API."""
    def release_files(name: str, version: str) -> Files:
        request = urllib.request.Request(f"{index}/{name}/",
                                         headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            data = json.load(response)
        files = []
        for file in data["files"]:
            filename = file["filename"]
            if filename.endswith(".whl"):
                file_version = str(parse_wheel_filename(filename)[1])
            else:
                stem = filename.removesuffix(".tar.gz").removesuffix(".zip")
                file_version = stem.rsplit("-", 1)[-1]
            if file_version == version or file_version.split("+")[0] == version:
                files.append({"filename": filename, "requires-python": file.get("requires-python")})
        return files

    return release_files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", nargs="?", default="requirements.txt")
    args = parser.parse_args(argv)
    pins = read_lock(Path(args.lock))
    index = index_url()
    print(f"check_wheels: {len(pins)} locked packages × Python {', '.join(f'{a}.{b}' for a, b in PYTHONS)} × "
          f"{', '.join(PLATFORMS)}, from {index}")
    problems = gaps(pins, simple_api(index))
    for problem in problems:
        print(f"  {problem}")
    print(f"check_wheels: {'every locked package has its wheels' if not problems else f'{len(problems)} gap(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
