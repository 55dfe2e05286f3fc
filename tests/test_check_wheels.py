"""tools/check_wheels.py (`make check-wheels`) against a fake index: no network."""

from pathlib import Path

import check_wheels

ROOT = Path(__file__).resolve().parents[1]

FAKE_INDEX = {
    ("purelib", "1.0"): ["purelib-1.0-py3-none-any.whl", "purelib-1.0.tar.gz"],
    ("compiled", "2.0"): [f"compiled-2.0-cp{v}-cp{v}-{p}.whl" for v in (311, 312, 313, 314)
                          for p in ("manylinux_2_17_x86_64.manylinux2014_x86_64", "macosx_11_0_arm64", "win_amd64")],
    ("oldbuild", "0.5"): [f"oldbuild-0.5-cp{v}-cp{v}-{p}.whl" for v in (311, 312)
                          for p in ("manylinux_2_28_x86_64", "macosx_14_0_arm64", "win_amd64")]
                         + ["oldbuild-0.5.tar.gz"],
    ("winonly", "3.0"): [f"winonly-3.0-cp{v}-cp{v}-win_amd64.whl" for v in (311, 312, 313, 314)],
    ("sdistonly", "1.1"): ["sdistonly-1.1.tar.gz"],
    ("abi3", "4.0"): ["abi3-4.0-cp311-abi3-manylinux_2_17_x86_64.whl", "abi3-4.0-cp311-abi3-macosx_11_0_arm64.whl",
                      "abi3-4.0-cp311-abi3-win_amd64.whl"],
}


def fake_files(name, version):
    return [{"filename": filename, "requires-python": ">=3.11"} for filename in FAKE_INDEX[(name, version)]]


def test_gaps_name_the_missing_pythons_and_platforms(tmp_path):
    lock = tmp_path / "requirements.txt"
    lock.write_text("# lock\npurelib==1.0\n    # via x\ncompiled==2.0\noldbuild==0.5\n"
                    "winonly==3.0 ; sys_platform == 'win32'\nsdistonly==1.1 ; sys_platform == 'darwin'\nabi3==4.0\n")
    problems = check_wheels.gaps(check_wheels.read_lock(lock), fake_files)
    assert problems == [
        "oldbuild==0.5: no wheel for Python 3.13, 3.14 on linux-x86_64 (sdist only there: builds from source)",
        "oldbuild==0.5: no wheel for Python 3.13, 3.14 on macos-arm64 (sdist only there: builds from source)",
        "oldbuild==0.5: no wheel for Python 3.13, 3.14 on windows-x86_64 (sdist only there: builds from source)",
        "sdistonly==1.1: no wheel for Python 3.11, 3.12, 3.13, 3.14 on macos-arm64"
        " (sdist only there: builds from source)",
    ]


def test_requires_python_excludes_a_wheel():
    files = [{"filename": "x-1.0-py3-none-any.whl", "requires-python": ">=3.12"}]
    assert not check_wheels.has_wheel(files, (3, 11), "linux-x86_64")
    assert check_wheels.has_wheel(files, (3, 14), "windows-x86_64")


def test_the_lock_is_readable_and_fully_pinned():
    pins = check_wheels.read_lock(ROOT / "requirements.txt")
    assert len(pins) > 100 and ("torch", "2.13.0", None) in pins
