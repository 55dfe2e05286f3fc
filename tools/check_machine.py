"""Check a machine for the Gradient Flow course: run it (`make check-machine`) before a workshop.

Checks the Python version (3.11 to 3.14; a newer one is only a warning), that every package
of the lock (requirements.txt) is installed at its locked version, which build of torch is
installed (CPU or CUDA), the device and torch's thread count, free disk space and memory, and
times a few training steps of a 20-layer MLP on the digits to estimate how long the course
takes here compared with the reference machine (2-core CPU, benchmarks/RESULTS.md).
Exits 1 if something would stop the course from running; slowness is only a warning.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# time_training_step() on the reference machine (the 2-core CPU of benchmarks/RESULTS.md), in ms,
# measured on the quiet machine the day RESULTS.md was written (1.5 ms in three runs; an earlier,
# busier day gave 2.6 to 4.6 ms, and the course took 322 s then).
REFERENCE_STEP_MS = 1.5
# The whole course on the reference machine when RESULTS.md cannot be read (seconds, 15 notebooks).
REFERENCE_COURSE_S = 269.6
MIN_FREE_DISK_GIB = 1.0
MIN_MEMORY_GIB = 2.0


TESTED_PYTHONS = ((3, 11), (3, 12), (3, 13), (3, 14))


def check_python(version_info=sys.version_info) -> list[str]:
    """Problems with the Python version: older than 3.11."""
    if tuple(version_info[:2]) < TESTED_PYTHONS[0]:
        found = ".".join(str(part) for part in version_info[:3])
        return [f"Python {found}: the course needs Python 3.11 to 3.14 "
                "(`make install PYTHON=/path/to/python3.11` builds .venv with another one)"]
    return []


def python_warnings(version_info=sys.version_info) -> list[str]:
    """A warning for a Python newer than the course was tested with."""
    if tuple(version_info[:2]) > TESTED_PYTHONS[-1]:
        found = ".".join(str(part) for part in version_info[:3])
        return [f"Python {found} is newer than the course was tested with (3.11 to 3.14): it may work; "
                "if a package fails to install, use Python 3.14 or older"]
    return []


def pinned(requirements: Path = ROOT / "requirements.txt") -> dict[str, str]:
    """{package: version} of every ``name==version`` line of the lock that applies to this machine."""
    from packaging.requirements import Requirement

    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate():
                pins[requirement.name] = str(requirement.specifier).removeprefix("==")
    return pins


def torch_build(version: str, cuda: str | None, has_gpu: bool) -> tuple[str, list[str]]:
    """Which build of torch is installed ("CPU build", "CUDA 12.8 build"), and a warning if it does not fit."""
    if cuda:
        warnings = [] if has_gpu else [
            f"torch {version} is a CUDA {cuda} build but no CUDA GPU is visible: the CPU build is enough here "
            "and about 10x smaller (see the README, section 'GPU, CPU and offline')"]
        return f"CUDA {cuda} build", warnings
    return "CPU build", []


def check_packages(pins: dict[str, str], version=importlib.metadata.version) -> list[str]:
    """Problems: pinned packages missing or at another version (a local tag like +cpu is fine)."""
    problems = []
    for name, wanted in sorted(pins.items()):
        try:
            found = version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name} is not installed ({wanted} is pinned): run `make install`")
            continue
        if found.split("+", 1)[0] != wanted:
            problems.append(f"{name} {found} is installed, {wanted} is pinned: run `make install` "
                            "(or `pip install -r requirements.txt` in your environment)")
    return problems


def check_disk(path: Path = ROOT, free_bytes: int | None = None) -> list[str]:
    """Problems: less than MIN_FREE_DISK_GIB free where the course lives."""
    free = shutil.disk_usage(path).free if free_bytes is None else free_bytes
    if free < MIN_FREE_DISK_GIB * 2**30:
        return [f"only {free / 2**30:.2f} GiB free on the disk of {path}; "
                f"the course needs about {MIN_FREE_DISK_GIB:g} GiB for checkpoints and outputs"]
    return []


def memory_gib() -> float | None:
    """Physical memory in GiB, or None where the OS does not say (os.sysconf)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def reference_course_seconds(results: Path = ROOT / "benchmarks" / "RESULTS.md") -> tuple[float, int]:
    """(seconds, notebooks) of the whole course on the reference machine, from RESULTS.md."""
    try:
        match = re.search(r"\*\*whole course\*\* \((\d+) notebooks\) \| ([\d.]+)", results.read_text())
    except OSError:
        match = None
    if match:
        return float(match.group(2)), int(match.group(1))
    return REFERENCE_COURSE_S, 16


def time_training_step(device, *, depth: int = 20, width: int = 64, batch: int = 128,
                       steps: int = 10, repeats: int = 10) -> float:
    """Seconds per SGD step of a ``depth``-layer MLP on a batch of digits, on one thread.

    One thread measures the speed of a core, which other programs disturb far less than a
    multi-threaded step (idle OpenMP threads spin); the fastest of ``repeats`` runs is kept.
    """
    import torch
    import torch.nn.functional as F

    from helpers.data import digits
    from helpers.device import seed_everything
    from helpers.models import MLP

    seed_everything(0)
    data = digits(device=device)
    x, y = data.X_train[:batch], data.y_train[:batch]
    model = MLP(64, 10, width, depth).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def run(n: int) -> torch.Tensor:
        for _ in range(n):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return loss

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(5)  # warm-up: first calls allocate and pick kernels
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            loss = run(steps)
            best = min(best, (time.perf_counter() - start) / steps)
    finally:
        torch.set_num_threads(threads)
    if not torch.isfinite(loss):
        raise RuntimeError(f"the timed training step gave a non-finite loss ({loss.item()})")
    return best


def estimate(step_s: float, reference_step_ms: float = REFERENCE_STEP_MS,
             reference_course_s: float = REFERENCE_COURSE_S) -> float:
    """The course's running time here, scaled from the reference machine by the step time."""
    return reference_course_s * step_s * 1000 / reference_step_ms


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    failures: list[str] = []
    warnings: list[str] = []

    def report(ok: bool, text: str, problems=()):
        print(f"{'ok  ' if ok else 'FAIL'}  {text}")
        for problem in problems:
            print(f"        {problem}")

    version = platform.python_version()
    problems = check_python()
    executable = Path(sys.executable)
    shown = executable.relative_to(ROOT) if executable.is_relative_to(ROOT) else executable
    report(not problems, f"Python {version} ({shown})", problems)
    failures += problems
    warnings += python_warnings()

    pins = pinned()
    problems = check_packages(pins)
    report(not problems, f"{len(pins) - len(problems)} of {len(pins)} locked packages at their locked version",
           problems)
    failures += problems

    problems = check_disk()
    report(not problems, f"{shutil.disk_usage(ROOT).free / 2**30:.1f} GiB free disk", problems)
    failures += problems

    memory = memory_gib()
    if memory is not None:
        print(f"ok    {memory:.1f} GiB of memory")
        if memory < MIN_MEMORY_GIB:
            warnings.append(f"{memory:.1f} GiB of memory: a notebook peaks at about 0.55 GiB, "
                            "close other programs during the course")

    try:
        import torch

        from helpers.device import get_device
        device = get_device()
        build, build_warnings = torch_build(torch.__version__, torch.version.cuda, torch.cuda.is_available())
        warnings += build_warnings
        report(True, f"torch {torch.__version__} ({build}), device {device}, {torch.get_num_threads()} CPU thread(s)"
               f"{'' if device.type != 'cuda' else ' (' + torch.cuda.get_device_name(device) + ')'}")
        step_s = time_training_step(device, repeats=3 if "--quick" in argv else 10)
    except Exception as error:  # anything here means the course cannot run: say what, fail
        report(False, "torch, helpers and a training step", [f"{type(error).__name__}: {error}"])
        failures.append(str(error))
    else:
        course_s, notebooks = reference_course_seconds()
        here = estimate(step_s, REFERENCE_STEP_MS, course_s)
        ratio = step_s * 1000 / REFERENCE_STEP_MS
        report(True, f"a training step of a 20-layer MLP on one thread: {step_s * 1000:.1f} ms "
               f"({ratio:.1f}x the reference 2-core CPU's {REFERENCE_STEP_MS:g} ms)")
        print(f"      estimate: the {notebooks} notebooks run in about {max(1, round(here / 60))} min here "
              f"({course_s / 60:.1f} min on the reference machine; fewer with more cores)")
        if ratio > 3:
            warnings.append(f"this machine is {ratio:.1f}x slower than the reference: expect some notebooks "
                            "to take several minutes (close other programs, or use a GPU: COURSE_DEVICE=cuda)")

    for warning in warnings:
        print(f"warn  {warning}")
    if failures:
        print(f"\ncheck-machine: {len(failures)} problem(s) above; fix them before the workshop.")
        return 1
    print("\ncheck-machine: this machine is ready for the course.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
