"""tools/headless.py: the DevTools pipe client, against a fake browser (no Chromium needed)."""

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import headless  # noqa: E402

# A stand-in for Chromium: reads NUL-separated commands on fd 3, answers on fd 4. Each reply
# is preceded by an event and written in two pieces, so messages arrive split and joined.
FAKE = r"""
import json, os, sys
mode, buffer = sys.argv[1], b""
while True:
    chunk = os.read(3, 65536)
    if not chunk:
        break
    buffer += chunk
    *messages, buffer = buffer.split(b"\0")
    for raw in messages:
        message = json.loads(raw)
        if mode == "silent":
            continue
        if mode == "die" or message["method"] == "Browser.close":
            sys.exit(0)
        if message["method"] == "Fail":
            reply = {"id": message["id"], "error": {"code": -1, "message": "nope"}}
        else:
            reply = {"id": message["id"], "result": {"echo": message["params"]}}
        event = {"method": "Fake.event", "params": {"n": message["id"]}, "sessionId": message.get("sessionId")}
        data = json.dumps(event).encode() + b"\0" + json.dumps(reply).encode() + b"\0"
        os.write(4, data[:7])
        os.write(4, data[7:])
"""


def fake(mode="echo", timeout=5.0):
    return headless.Browser([sys.executable, "-c", FAKE, mode], timeout=timeout)


def test_encode_ends_each_message_with_nul():
    assert headless.encode({"id": 1, "method": "M"}) == b'{"id":1,"method":"M"}\0'


def test_splitter_reassembles_messages_across_reads():
    splitter = headless.Splitter()
    assert splitter.feed(b'{"id":1}\0{"meth') == [{"id": 1}]
    assert splitter.feed(b'od":"E"}') == []
    assert splitter.feed(b'\0\0{"id":2}\0') == [{"method": "E"}, {"id": 2}]


def test_call_gets_its_reply_and_events_are_queued():
    browser = fake()
    try:
        assert browser.call("Echo", {"x": 1}) == {"echo": {"x": 1}}
        assert browser.call("Echo", {"x": 2}, session_id="S") == {"echo": {"x": 2}}
        assert browser.next_event(5)["params"] == {"n": 1}
        assert browser.next_event(5) == {"method": "Fake.event", "params": {"n": 2}, "sessionId": "S"}
        assert browser.next_event(0.05) is None
    finally:
        browser.close(grace=2)
    assert browser.process.returncode == 0, "Browser.close should let the browser exit by itself"


def test_an_error_reply_raises_naming_the_method():
    browser = fake()
    try:
        with pytest.raises(headless.BrowserError, match="Fail failed: .*nope"):
            browser.call("Fail")
    finally:
        browser.close(grace=2)


def test_a_silent_browser_times_out_and_is_killed():
    browser = fake("silent")
    start = time.monotonic()
    with pytest.raises(headless.BrowserError, match="no reply to Echo within 0.3 s"):
        browser.call("Echo", timeout=0.3)
    assert time.monotonic() - start < 3
    browser.close(grace=0.2)
    assert browser.process.returncode not in (None, 0)


def test_a_dying_browser_raises_instead_of_hanging():
    browser = fake("die")
    try:
        with pytest.raises(headless.BrowserError, match="closed its pipe"):
            browser.call("Echo", timeout=10)
    finally:
        browser.close(grace=1)


def test_close_removes_the_throwaway_profile():
    browser = fake()
    profile = browser._owned_dir
    assert os.path.isdir(profile)
    browser.close(grace=2)
    assert not os.path.exists(profile)


def test_find_chromium_honours_course_chromium(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CHROMIUM", str(tmp_path / "missing"))
    assert headless.find_chromium() is None
    monkeypatch.setenv("COURSE_CHROMIUM", sys.executable)
    assert headless.find_chromium() == sys.executable
