"""tools/check_machine.py: what a workshop attendee runs before the day."""

import importlib.metadata
from pathlib import Path

import check_machine
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_python_311_to_314_pass_older_fails_newer_warns():
    for minor in (11, 12, 13, 14):
        assert check_machine.check_python((3, minor, 0)) == [] and check_machine.python_warnings((3, minor, 0)) == []
    [problem] = check_machine.check_python((3, 10, 13))
    assert "Python 3.10.13" in problem and "3.11 to 3.14" in problem
    assert check_machine.check_python((3, 15, 0)) == []
    [warning] = check_machine.python_warnings((3, 15, 0))
    assert "3.15.0 is newer than the course was tested with" in warning


def test_torch_build_is_named_and_a_useless_cuda_build_warned():
    assert check_machine.torch_build("2.13.0+cpu", None, False) == ("CPU build", [])
    assert check_machine.torch_build("2.13.0", "12.8", True) == ("CUDA 12.8 build", [])
    build, [warning] = check_machine.torch_build("2.13.0", "13.0", False)
    assert build == "CUDA 13.0 build" and "no CUDA GPU is visible" in warning


def test_pins_are_read_from_requirements(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# comment with a==1\ntorch==2.13.0\n\nnumpy==2.4.6  # why\n"
                            "appnope==1.0.0 ; sys_platform == 'nonexistent-os'\n"
                            "colorama==0.4.6 ; python_version >= '3'\n")
    assert check_machine.pinned(requirements) == {"torch": "2.13.0", "numpy": "2.4.6", "colorama": "0.4.6"}
    assert check_machine.pinned()["torch"] == "2.13.0"


def test_packages_missing_or_at_another_version_are_named():
    installed = {"torch": "2.13.0+cpu", "numpy": "2.4.5"}

    def version(name):
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[name]

    problems = check_machine.check_packages({"torch": "2.13.0", "numpy": "2.4.6", "nbval": "0.11.0"}, version)
    assert len(problems) == 2
    assert "nbval is not installed (0.11.0 is pinned)" in problems[0]
    assert "numpy 2.4.5 is installed, 2.4.6 is pinned" in problems[1]


def test_this_environment_has_every_pin():
    assert check_machine.check_packages(check_machine.pinned()) == []


def test_too_little_disk_fails():
    assert check_machine.check_disk(free_bytes=5 * 2**30) == []
    [problem] = check_machine.check_disk(free_bytes=2**28)
    assert "0.25 GiB free" in problem


def test_reference_time_comes_from_the_benchmarks(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("| **whole course** (15 notebooks) | 300.5 | | 360 s | within |\n")
    assert check_machine.reference_course_seconds(results) == (300.5, 15)
    assert check_machine.reference_course_seconds(tmp_path / "missing.md") == (check_machine.REFERENCE_COURSE_S, 16)
    seconds, notebooks = check_machine.reference_course_seconds()
    assert seconds > 0 and notebooks >= 13


def test_estimate_scales_with_the_step_time():
    assert check_machine.estimate(0.006, reference_step_ms=3.0, reference_course_s=250) == pytest.approx(500)


def test_a_training_step_is_timed_and_finite():
    import torch
    threads = torch.get_num_threads()
    seconds = check_machine.time_training_step(torch.device("cpu"), depth=3, steps=2, repeats=2)
    assert 0 < seconds < 5
    assert torch.get_num_threads() == threads, "the thread count must be restored"


def test_main_reports_a_ready_machine(capsys):
    assert check_machine.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "ready for the course" in out and "estimate:" in out


def test_main_fails_with_a_clear_message(monkeypatch, capsys):
    monkeypatch.setattr(check_machine, "pinned", lambda: {"surely-not-a-package-here": "1.0"})
    assert check_machine.main(["--quick"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "surely-not-a-package-here is not installed" in out and "1 problem(s)" in out
