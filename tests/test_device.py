import platform
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers.device import ENV_VAR, get_device, seed_everything


def test_default_is_cpu(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert get_device() == torch.device("cpu")


def test_environment_variable_is_honoured(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "cpu")
    assert get_device() == torch.device("cpu")
    monkeypatch.setenv(ENV_VAR, "  ")
    assert get_device() == torch.device("cpu")


def test_prefer_overrides_environment(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "not-a-device")
    assert get_device("cpu") == torch.device("cpu")
    assert get_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert get_device("auto") == torch.device("cpu")


def test_auto_picks_cuda_when_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device("auto") == torch.device("cuda")


def test_unknown_name_from_environment_is_named(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "tpu")
    with pytest.raises(ValueError, match=r"COURSE_DEVICE.*'tpu'"):
        get_device()


def test_unknown_name_from_argument(monkeypatch):
    with pytest.raises(ValueError, match=r"prefer.*'gpu'"):
        get_device("gpu")


def test_bad_type():
    with pytest.raises(TypeError, match="prefer must be"):
        get_device(3)


def test_unavailable_accelerator_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no cuda device"):
        get_device("cuda:0")


def test_seed_everything_reproduces_every_generator():
    # np.random.rand: the legacy global RNG is exactly what seed_everything seeds
    seed_everything(123)
    first = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    seed_everything(123)
    second = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2])


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (2**32, ValueError), (1.5, TypeError),
                                         (True, TypeError), ("0", TypeError)])
def test_seed_everything_bad_seeds(seed, error):
    state = torch.get_rng_state()
    with pytest.raises(error, match="seed"):
        seed_everything(seed)
    assert torch.equal(state, torch.get_rng_state())  # nothing reseeded


FAULTS = """
import resource, torch
import helpers.device as device
from helpers.ensemble import from_seeds, fit_ensemble
from helpers.models import MLP
torch.manual_seed(0)
X, y = torch.randn(256, 64), torch.randint(0, 10, (256,))
def faults_per_step():
    ens = from_seeds(lambda: MLP(64, 10, width=64, depth=8), seeds=range(32))
    ens._chain = None         # autograd's path: activations, gradients and graph buffers anew every step
    fit_ensemble(ens, (X, y), epochs=1, lr=0.01, progress_bar=False)
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fit_ensemble(ens, (X, y), epochs=2, lr=0.01, progress_bar=False)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / 8
device._kept = False          # as if the C library were not glibc: nothing is set
before = faults_per_step()
device._kept = None
print(device.keep_freed_memory(), before, faults_per_step())
"""


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"),
                    reason="mallopt thresholds are glibc's")
def test_keep_freed_memory_stops_the_page_faults_of_every_step():
    # in a fresh process: the setting is process-wide and decided once
    done = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, timeout=120, check=True)
    applied, before, after = done.stdout.split()
    assert applied == "True"
    assert float(before) > 200           # 32 stacked MLPs fault in their freed pages again every step
    assert float(after) < 0.1 * float(before)


def test_keep_freed_memory_is_decided_once(monkeypatch):
    import helpers.device as device

    calls = []
    monkeypatch.setattr(device, "_kept", None)
    monkeypatch.setattr(device, "_set_malloc_thresholds", lambda: calls.append(1) or False)
    assert device.keep_freed_memory() is False
    assert device.keep_freed_memory() is False
    assert calls == [1]


def test_keep_freed_memory_leaves_an_allocator_tuned_in_the_environment_alone(monkeypatch):
    import helpers.device as device

    monkeypatch.setattr(device, "_kept", None)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000")
    assert device.keep_freed_memory() is False
    monkeypatch.setattr(device, "_kept", None)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1000")
    assert device.keep_freed_memory() is False
