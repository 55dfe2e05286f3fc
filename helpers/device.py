"""Where tensors live and how every random generator is seeded.

The course runs on the CPU by default so that every learner sees the same numbers.
Set the environment variable ``COURSE_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``
or ``auto``) to move every notebook to an accelerator without editing it.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from helpers._checks import check_int

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
