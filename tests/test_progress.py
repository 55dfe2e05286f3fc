"""helpers.progress: progress bars that COURSE_PROGRESS=0 switches off."""

from helpers.progress import progress, progress_enabled


def test_progress_switch(monkeypatch):
    monkeypatch.setenv("COURSE_PROGRESS", "0")
    items = [1, 2]
    assert not progress_enabled() and progress(items) is items
    monkeypatch.setenv("COURSE_PROGRESS", "1")
    assert progress_enabled() and not progress_enabled(False)
    assert list(progress(items, enabled=True)) == items
