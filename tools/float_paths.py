"""The cross-CPU gate: nbval on the notebooks under every CPU float path torch can take here.

Floats differ in their last digits between CPUs because torch picks its own vectorised
kernels by instruction set (ATEN_CPU_CAPABILITY) and MKL (matrix products) and oneDNN
(convolutions) pick theirs. A claim tuned on one CPU can fail on another; forcing each
path here stands in for the other CPUs CI and learners have. Each profile caps all three
libraries together:

    native   what this CPU picks by itself
    avx2     ATen avx2,    MKL AVX2,   oneDNN AVX2   (run where the CPU has AVX-512)
    default  ATen default, MKL AVX2,   oneDNN AVX2   (plain scalar ATen kernels)
    sse      ATen default, MKL SSE4_2, oneDNN SSE41  (a CPU without AVX2; `make float-paths-full` only)

``default`` keeps MKL and oneDNN at AVX2, which every x86 CPU of the last decade has: with
their SSE kernels an ensemble of 20-layer MLPs trained 1.4x slower (measured here, scalar ATen
both ways), and ``default`` is the gate's slowest profile, for CPUs that CI and learners no
longer have. ``sse`` still checks them, before the notebooks are re-executed.

All (notebook, profile) pairs run in **one** pytest session, so ``-n 2`` keeps both kernels
busy to the end instead of waiting, once per profile, for the slowest notebook. Each
notebook is copied to ``build/float-paths/<profile>/``; this module, loaded into that
session as a pytest plugin (``-p float_paths``), gives the kernel of each copy its
profile's variables (from ``profiles.json`` there) and starts the pairs longest first
(from ``benchmarks/RESULTS.md``), which is what keeps the two workers evenly loaded.

Usage: python tools/float_paths.py PYTEST_COMMAND... NOTEBOOK_OR_FOLDER...
    e.g. python tools/float_paths.py env OMP_NUM_THREADS=1 python -m pytest --nbval -n 2 --dist loadfile notebooks
    PROFILES="native default" narrows the profiles; PROFILES=all adds sse. Exit status: pytest's.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# inside the repository (main() checks): pytest's rootdir, where its items are named after their files
GATE = Path(os.environ.get("FLOAT_PATHS_ROOT", ROOT / "build")).resolve() / "float-paths"
PROFILES = {
    "native": {},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
               "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "sse": {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}
# every variable that moves torch's, MKL's or oneDNN's float path (DNNL_MAX_CPU_ISA is oneDNN's
# older name for its cap): cleared for the native profile and for the probe of this CPU
PATH_VARIABLES = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
                  "MKL_CBWR", "MKL_DEBUG_CPU_TYPE")
# how much longer a notebook takes on a profile than on the native path (measured on an
# AVX-512 machine), only to order the work longest first
SLOWDOWN = {"native": 1.0, "avx512": 1.0, "avx2": 1.05, "default": 1.4, "sse": 1.7}


def native_capability(python: str = sys.executable) -> str:
    """What this CPU picks by itself, whatever the caller's environment caps."""
    code = "import torch; print(torch.backends.cpu.get_cpu_capability().lower())"
    env = {k: v for k, v in os.environ.items() if k not in PATH_VARIABLES}
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.strip()


def choose_profiles(native: str, requested: str | None) -> list[str]:
    requested = (requested or "").strip()
    if requested and requested != "all":
        names = list(dict.fromkeys(requested.split()))       # each once, in the order given
        unknown = [n for n in names if n not in PROFILES]
        if unknown:
            raise SystemExit(f"float_paths: unknown profile(s) {unknown} in PROFILES; known: {list(PROFILES)} "
                             "or 'all'")
        return names
    names = ["native"]
    if native.startswith("avx512"):
        names.append("avx2")
    if native != "default":
        names += ["default", "sse"] if requested else ["default"]
    return names


def split_command(argv: list[str]) -> tuple[list[str], list[Path]]:
    """The pytest command, and the notebooks named at its end (files or folders of them)."""
    notebooks: list[Path] = []
    while argv and (argv[-1].endswith(".ipynb") or Path(argv[-1]).is_dir()):
        if len(argv) > 1 and argv[-2].startswith("-") and not argv[-1].endswith(".ipynb"):
            break                                    # a folder that is an option's value (--ignore DIR)
        path = Path(argv.pop())
        notebooks[:0] = sorted(path.glob("*.ipynb")) if path.is_dir() else [path]
    if not notebooks:
        raise SystemExit("float_paths: the command must end with notebooks or folders of notebooks")
    missing = [str(nb) for nb in notebooks if not nb.is_file()]
    if missing:
        raise SystemExit(f"float_paths: no such notebook: {', '.join(missing)}")
    names = [nb.name for nb in notebooks]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SystemExit(f"float_paths: two notebooks named {', '.join(twice)}; the copies of one folder per "
                         "profile need distinct names")
    return argv, notebooks


def measured_seconds(path: Path = ROOT / "benchmarks" / "RESULTS.md") -> dict[str, float]:
    """Each notebook's wall time as last measured (benchmarks/notebooks.py), for the ordering only."""
    if not path.exists():
        return {}
    rows = re.findall(r"^\| (\S+\.ipynb) \| ([\d.]+) \|", path.read_text(), re.M)
    return {name: float(seconds) for name, seconds in rows}


def prepare(notebooks: list[Path], profiles: list[str]) -> list[str]:
    """Copy the notebooks per profile; write the profiles' variables and the running order."""
    shutil.rmtree(GATE, ignore_errors=True)
    seconds = measured_seconds()
    pairs = []
    for profile in profiles:
        (GATE / profile).mkdir(parents=True)
        for nb in notebooks:
            shutil.copy2(nb, GATE / profile / nb.name)
            pairs.append((seconds.get(nb.name, 30.0) * SLOWDOWN[profile], f"{profile}/{nb.name}"))
    order = [name for _, name in sorted(pairs, key=lambda p: -p[0])]
    (GATE / "profiles.json").write_text(json.dumps({"env": {p: PROFILES[p] for p in profiles}, "order": order},
                                                   indent=1))
    return [str((GATE / name).relative_to(Path.cwd())) if GATE.is_relative_to(Path.cwd()) else str(GATE / name)
            for name in order]


def main(argv: list[str]) -> int:
    command, notebooks = split_command(list(argv))
    if not GATE.is_relative_to(ROOT):
        # pytest names an item outside its rootdir (this repository) "::Cell 3", without the file: the
        # notebooks' items then share names, and xdist ran 27 of 190 of them and reported a pass
        raise SystemExit(f"float_paths: FLOAT_PATHS_ROOT must be inside the repository {ROOT}, got {GATE.parent}")
    native = native_capability()
    profiles = choose_profiles(native, os.environ.get("PROFILES"))
    copies = prepare(notebooks, profiles)
    print(f"== float paths: {' '.join(profiles)} (this CPU: {native}); {len(notebooks)} notebook(s) each, "
          f"in one pytest session", flush=True)
    for p in profiles:
        print(f"   {p}: {' '.join(f'{k}={v}' for k, v in PROFILES[p].items()) or 'nothing capped'}", flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "tools"),
                                                                    os.environ.get("PYTHONPATH")])))
    code = subprocess.call(command + ["-p", "float_paths"] + copies, env=env)
    verdict = "passed" if code == 0 else "FAILED (the failing copies' folder names the profile)"
    print(f"float paths {verdict}: {' '.join(profiles)}", file=sys.stderr if code else sys.stdout)
    return code


# --- the pytest plugin side (``-p float_paths``) -------------------------------------------
# the kernel inherits the environment when nbval starts it, at the notebook's first cell
_WORKER_OWN = {name: os.environ.get(name) for name in PATH_VARIABLES}   # as the worker started


@functools.cache
def _settings_in(folder: Path) -> dict | None:
    settings = folder / "profiles.json"
    return json.loads(settings.read_text()) if settings.exists() else None


def pytest_collection_modifyitems(items):
    """Pairs longest first, in the order :func:`prepare` wrote; the cells of a notebook in order."""
    settings = next((found for item in items if (found := _settings_in(item.path.parent.parent))), None)
    if settings is None:
        return
    rank = {name: i for i, name in enumerate(settings["order"])}
    items.sort(key=lambda item: rank.get(f"{item.path.parent.name}/{item.path.name}", len(rank)))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    settings = _settings_in(item.path.parent.parent)
    for name in PATH_VARIABLES:
        os.environ.pop(name, None)
    if settings is None:          # not a gate copy: the worker's own environment
        os.environ.update({k: v for k, v in _WORKER_OWN.items() if v is not None})
        return
    os.environ.update(settings["env"].get(item.path.parent.name, {}))


def pytest_unconfigure(config):
    """The session's end: the variables as the process had them (for pytest run in-process)."""
    for name, value in _WORKER_OWN.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
