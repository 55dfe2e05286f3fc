"""Where tensors live, how every random generator is seeded, and how freed CPU memory is kept.

The course runs on the CPU by default so that every learner sees the same numbers.
Set the environment variable ``COURSE_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``
or ``auto``) to move every notebook to an accelerator without editing it.
"""

from __future__ import annotations

import ctypes
import os
import platform
import random

import numpy as np
import torch

from helpers._checks import check_int

__all__ = ["ENV_VAR", "get_device", "seed_everything", "keep_freed_memory"]

ENV_VAR = "COURSE_DEVICE"
_KINDS = ("cpu", "cuda", "mps", "auto")


def _available(kind: str) -> bool:
    if kind == "cpu":
        return True
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return torch.backends.mps.is_available()
    return False


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    r"""Return the device the course should compute on.

    The choice, first match wins: ``prefer`` if given, else the environment variable
    ``COURSE_DEVICE``, else ``"cpu"``. ``"auto"`` picks CUDA, then MPS, then the CPU,
    whichever is available first.

    Args:
        prefer: ``None``, a :class:`torch.device`, or one of ``"cpu"``, ``"cuda"``,
            ``"cuda:<index>"``, ``"mps"``, ``"auto"``.

    Raises:
        ValueError: the name is not a device kind the course knows.
        RuntimeError: the requested accelerator is not available on this machine.

    Example:
        >>> get_device("cpu")
        device(type='cpu')
    """
    source = "prefer"
    if prefer is None:
        prefer = os.environ.get(ENV_VAR, "").strip() or "cpu"
        source = f"environment variable {ENV_VAR}"
    if isinstance(prefer, torch.device):
        name = str(prefer)
    elif isinstance(prefer, str):
        name = prefer.strip().lower()
    else:
        raise TypeError(
            f"prefer must be None, a str or a torch.device, got {type(prefer).__name__}"
        )
    kind = name.split(":", 1)[0]
    if kind not in _KINDS:
        raise ValueError(f"{source} must name one of {_KINDS} (cuda may carry ':index'), got {name!r}")
    if kind == "auto":
        for candidate in ("cuda", "mps"):
            if _available(candidate):
                return torch.device(candidate)
        return torch.device("cpu")
    if not _available(kind):
        raise RuntimeError(
            f"{source} asks for {name!r} but this machine has no {kind} device; "
            f"use 'cpu' or 'auto'"
        )
    return torch.device(name)


def seed_everything(seed: int) -> None:
    r"""Seed Python's, NumPy's and PyTorch's (CPU and CUDA) random generators.

    Code that wants randomness independent of this global state should pass its own
    ``torch.Generator().manual_seed(...)`` instead.

    Args:
        seed: an int in :math:`[0, 2^{32})`.

    Example:
        >>> seed_everything(0); first = torch.rand(3)
        >>> seed_everything(0); torch.equal(first, torch.rand(3))
        True
    """
    check_int("seed", seed, minimum=0)
    if seed >= 2**32:
        raise ValueError(f"seed must be < 2**32 (NumPy's limit), got {seed}")
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- learners' code may use the legacy global RNG
    torch.manual_seed(seed)  # also seeds every CUDA device


# mallopt(3) parameter numbers, from glibc's <malloc.h>
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 * 2**20    # glibc's largest allowed value on 64-bit systems
_TRIM_THRESHOLD = 512 * 2**20
_kept: bool | None = None       # the outcome of the first call; later calls are free


def keep_freed_memory() -> bool:
    r"""Make the C allocator reuse freed CPU memory instead of handing it back to the OS.

    glibc's ``malloc`` serves every block above ``M_MMAP_THRESHOLD`` with fresh pages from
    the operating system and returns the top of its heap once more than ``M_TRIM_THRESHOLD``
    bytes there are free. A training step frees its activations and gradients and the next
    step asks for the same sizes again, so every 4 KiB page of them is faulted in anew. For
    32 stacked MLPs of width 64 (tensors of 512 KiB) that was 3,600 page faults and a third
    of the step's time on a 2-core machine. This sets both thresholds through ``mallopt``
    (blocks up to 32 MiB come from the heap; up to 512 MiB of free heap is kept), the same
    settings as ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` in the environment.
    The process then keeps, at most, the memory it already peaked at; numbers do not change.

    :func:`helpers.training.fit` and :func:`helpers.ensemble.fit_ensemble` call it; the
    first call decides, later ones return the same answer at no cost, and the setting holds
    for the rest of the process (a notebook's kernel). Allocator settings of your own in the
    environment (``MALLOC_*_`` variables, ``glibc.malloc`` tunables in ``GLIBC_TUNABLES``)
    win: then nothing is changed.

    Returns:
        ``True`` if the C library is glibc and accepted both settings, ``False`` elsewhere
        (macOS, Windows and musl allocators keep freed blocks their own way) and when the
        environment already tunes glibc's allocator.

    Source: the GNU C Library manual, "Memory Allocation Tunables" and ``mallopt(3)``;
    PyTorch's CPU performance tuning guide recommends a caching allocator for the same reason.

    Example:
        >>> keep_freed_memory() in (True, False)
        True
    """
    global _kept
    if _kept is None:
        _kept = _set_malloc_thresholds()
    return _kept


def _tuned_by_the_user() -> bool:
    return (any(name.startswith("MALLOC_") and name.endswith("_") for name in os.environ)
            or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""))


def _set_malloc_thresholds() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or _tuned_by_the_user():
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mmap threshold first: setting it switches off glibc's dynamic adjustment of both
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
