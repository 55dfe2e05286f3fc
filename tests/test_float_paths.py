"""tools/float_paths.py: every (notebook, profile) pair in one pytest session, each kernel on its path."""

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import float_paths
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """import os, torch
profile = os.path.basename(os.getcwd())
with open(os.path.join(os.environ["GATE_PROBE_OUT"], profile + ".txt"), "w") as f:
    f.write(torch.backends.cpu.get_cpu_capability() + " " + str(os.environ.get("MKL_ENABLE_INSTRUCTIONS")))"""


@pytest.mark.slow
def test_each_kernel_runs_on_its_profiles_float_path(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(PROBE)]
    nbformat.write(nb, tmp_path / "probe.ipynb")
    out = tmp_path / "seen"
    out.mkdir()
    gate = ROOT / "build" / f"test-float-paths-{uuid.uuid4().hex}"   # inside the repository: see the next test
    env = dict(os.environ, FLOAT_PATHS_ROOT=str(gate), GATE_PROBE_OUT=str(out))
    env.pop("PROFILES", None)
    command = [sys.executable, str(ROOT / "tools" / "float_paths.py"), sys.executable, "-m", "pytest", "-q",
               "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env", "-n", "2", "--dist", "loadfile",
               str(tmp_path / "probe.ipynb")]
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(gate, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
    profiles = float_paths.choose_profiles(float_paths.native_capability(), None)
    seen = {p.stem: p.read_text() for p in out.iterdir()}
    assert sorted(seen) == sorted(profiles)
    native = float_paths.native_capability().upper()
    assert seen["native"] == f"{native} None"
    if "default" in seen:
        assert seen["default"] == "DEFAULT AVX2"
    if "avx2" in seen:
        assert seen["avx2"] == "AVX2 AVX2"


def test_pairs_run_longest_first(tmp_path, monkeypatch):
    monkeypatch.setattr(float_paths, "GATE", tmp_path / "float-paths")
    monkeypatch.setattr(float_paths, "measured_seconds", lambda: {"a.ipynb": 10.0, "b.ipynb": 50.0})
    notebooks = []
    for name in ("a.ipynb", "b.ipynb"):
        nbformat.write(nbformat.v4.new_notebook(), tmp_path / name)
        notebooks.append(tmp_path / name)
    copies = float_paths.prepare(notebooks, ["native", "default"])
    assert [Path(c).parent.name + "/" + Path(c).name for c in copies] == [
        "default/b.ipynb", "native/b.ipynb", "default/a.ipynb", "native/a.ipynb"]


def test_the_native_profile_is_this_cpus_whatever_the_environment_caps(monkeypatch):
    real = float_paths.native_capability()
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    assert float_paths.native_capability() == real


def test_notebook_arguments(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        nbformat.write(nbformat.v4.new_notebook(), tmp_path / folder / "x.ipynb")
    command, notebooks = float_paths.split_command(["pytest", "--ignore", str(tmp_path / "a"), str(tmp_path / "b")])
    assert command == ["pytest", "--ignore", str(tmp_path / "a")] and notebooks == [tmp_path / "b" / "x.ipynb"]
    with pytest.raises(SystemExit, match="two notebooks named x.ipynb"):
        float_paths.split_command(["pytest", str(tmp_path / "a" / "x.ipynb"), str(tmp_path / "b" / "x.ipynb")])
    with pytest.raises(SystemExit, match="no such notebook"):
        float_paths.split_command(["pytest", str(tmp_path / "nope.ipynb")])


def test_profiles_setting():
    assert float_paths.choose_profiles("avx512", " \t") == ["native", "avx2", "default"]
    assert float_paths.choose_profiles("avx512", "native native default") == ["native", "default"]


def test_the_command_must_name_notebooks():
    with pytest.raises(SystemExit, match="must end with notebooks"):
        float_paths.split_command(["python", "-m", "pytest"])
    assert float_paths.choose_profiles("avx512", "all") == ["native", "avx2", "default", "sse"]
    assert float_paths.choose_profiles("avx2", None) == ["native", "default"]
    with pytest.raises(SystemExit, match="unknown profile"):
        float_paths.choose_profiles("avx512", "native mmx")


def test_the_gate_folder_is_absolute():
    assert float_paths.GATE.is_absolute()


def test_a_gate_folder_outside_the_repository_is_refused(tmp_path):
    """Outside pytest's rootdir every notebook's items would be named "::Cell N" alike, and xdist would run
    a few of them and pass (it ran 27 of 190 cells of 8 notebook copies)."""
    notebook = tmp_path / "a.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), notebook)
    env = dict(os.environ, FLOAT_PATHS_ROOT=str(tmp_path / "build"))
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "float_paths.py"), "pytest", str(notebook)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "FLOAT_PATHS_ROOT must be inside the repository" in done.stderr
    assert not (tmp_path / "build").exists()
