"""The README and docs/ cannot go stale: every notebook has a syllabus row, every file they name
exists, every `make` target they name is in the Makefile, and every benchmark figure they quote
equals benchmarks/RESULTS.md."""

import re
from pathlib import Path

import check_machine
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
RESULTS = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
TOP_LEVEL = ("notebooks/", "tools/", "tests/", "helpers/", "benchmarks/", "docs/", "binder/", ".ci/")
# Named in the docs but made by a command, not committed, or placeholders.
NOT_FILES = ("site/", ".venv/", "wheels/", "NN_", "*")


def _text(path):
    return path.read_text(encoding="utf-8")


def results_notebooks():
    """{"00": (seconds, MiB)} from RESULTS.md's notebook table."""
    return {m[1]: (m[2], m[3]) for m in re.finditer(r"^\| (\d\d)_\w+\.ipynb \| ([\d.]+) \| (\d+) \|", RESULTS, re.M)}


def results_course():
    match = re.search(r"^\| \*\*whole course\*\* \((\d+) notebooks\) \| ([\d.]+) \|", RESULTS, re.M)
    return int(match[1]), match[2]


def test_every_notebook_has_exactly_one_syllabus_row():
    rows = re.findall(r"^\| (\d\d) \| ", _text(README), flags=re.M)
    assert rows == [nb.name[:2] for nb in NOTEBOOKS], "README syllabus rows ≠ notebooks/NN_*.ipynb"


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.name)
def test_every_repository_file_named_exists(doc):
    text = _text(doc)
    named = set()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):                    # Markdown links
        if not re.match(r"[a-z]+:", target) and not target.startswith("#"):
            named.add((doc.parent / target.split("#")[0]).resolve())
    for span in re.findall(r"`([^`\n]+)`", text):                          # code spans and commands
        for token in re.findall(r"[\w./*-]+", span):
            if token.startswith(NOT_FILES) or any(part in token for part in NOT_FILES):
                continue
            if token.startswith(TOP_LEVEL) or re.fullmatch(r"[\w-]+\.(md|txt|in|yml|toml|cfg)|Makefile", token):
                named.add((ROOT / token).resolve())
    missing = sorted(str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
                     for path in named if not path.exists())
    assert not missing, f"{doc.name} names files that do not exist"
    assert len(named) >= 3


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.name)
def test_every_make_target_named_exists(doc):
    targets = set(re.findall(r"^([\w-]+):", _text(ROOT / "Makefile"), flags=re.M))
    named = set(re.findall(r"`make ([a-z][\w-]*)", _text(doc)))
    assert named and named <= targets, named - targets


def test_readme_quotes_the_measured_course_time():
    count, seconds = results_course()
    assert count == len(NOTEBOOKS)
    minutes = f"{float(seconds) / 60:.1f}"
    assert f"the whole course runs in {minutes} min ({seconds} s)" in _text(README)
    assert f"for the {count} notebooks" in _text(README)


def test_workshop_timings_table_is_results_md():
    text = _text(ROOT / "docs" / "workshop.md")
    rows = {m[1]: (m[2], m[3]) for m in re.finditer(r"^\| (\d\d) \| [^|]+ \| ([\d.]+) s \| (\d+) MiB \|", text, re.M)}
    assert rows == results_notebooks() and len(rows) == len(NOTEBOOKS)
    count, seconds = results_course()
    assert f"| | **whole course** | **{seconds} s** | |" in text


def test_check_machine_sample_matches_results_and_the_lock():
    text = _text(ROOT / "docs" / "workshop.md")
    count, seconds = results_course()
    assert f"the {count} notebooks run in about" in text
    assert f"({float(seconds) / 60:.1f} min on the reference machine" in text
    assert check_machine.REFERENCE_COURSE_S == float(seconds) or check_machine.REFERENCE_COURSE_S == round(
        float(seconds))
    locked = len(check_machine.pinned())
    assert f"ok    {locked} of {locked} locked packages at their locked version" in text


def test_maintainers_measured_table_is_results_md():
    text = _text(ROOT / "docs" / "maintainers.md")
    count, seconds = results_course()
    assert f"| the whole course, {count} notebooks | {seconds} s |" in text
    fresh = re.search(r"^\| ([\d.]+ min) \| [\d.]+ min \| [^|]+ \| [^|]+ \|", RESULTS, re.M)[1]
    assert f"| `make test` from a fresh clone, install included | {fresh}" in text
    times = results_notebooks()
    fastest, slowest = min(times, key=lambda k: float(times[k][0])), max(times, key=lambda k: float(times[k][0]))
    assert f"{times[fastest][0]} s ({fastest}) … {times[slowest][0]} s ({slowest})" in text
    speedup = re.search(r"^\| helpers\.ensemble: .*\| ([\d.]+x) \| >= 8x \|", RESULTS, re.M)[1]
    assert f"| {speedup.replace('x', '×')} | ≥ 8×" in text


def test_maintainers_how_to_names_files_that_exist():
    text = _text(ROOT / "docs" / "maintainers.md")
    section = text.split("\n## How to…\n", 1)[1]
    paths = set(re.findall(r"`((?:helpers|tests|docs|tools|benchmarks)/[\w/.]+\.(?:py|md))`", section))
    paths |= {"pyproject.toml", "Makefile"} & set(re.findall(r"`([\w.]+)`", section))
    assert len(paths) >= 8
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"docs/maintainers.md's How to… names files that do not exist: {missing}"


def test_how_we_know_states_the_evidence_standard():
    text = _text(README)
    section = text.split("\n## How we know\n", 1)[1].split("\n## ", 1)[0]
    items = re.findall(r"^(\d)\. \*\*", section, flags=re.M)
    assert items == [str(i) for i in range(1, 8)]
    for needle in ("5 seeds", "helpers.ensemble", "median", "spread", "validation", "ATEN_CPU_CAPABILITY", "make test"):
        assert needle in section, needle


def test_readme_is_for_learners_first():
    text = _text(README)
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings[:4] == ["Before you start", "Two commands", "Syllabus", "How long it takes"]
    assert "show_solution" in text and "docs/workshop.md" in text and "docs/maintainers.md" in text
    assert len(text) < 15_000, "maintainer material belongs in docs/"
