"""A minimal headless-Chromium client on the standard library only.

Chromium started with ``--remote-debugging-pipe`` reads DevTools-protocol commands
(JSON objects, each followed by a NUL byte) from its file descriptor 3 and writes
replies and events, NUL-separated as well, to its file descriptor 4. :class:`Browser`
starts it with two pipes mapped onto those descriptors, sends commands and waits for
their replies; events are queued for the caller. Every wait has a time limit, so a
hung browser raises :class:`BrowserError` instead of hanging the caller.

Example (needs Chromium)::

    with Browser.launch(find_chromium()) as browser:
        page = browser.new_page()
        page.navigate("file:///tmp/index.html")
        print(page.evaluate("document.title"))
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

#: Flags that make Chromium start headless as root and stay off the network on its own.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(RuntimeError):
    """The browser failed, replied with an error, or did not answer in time."""


def find_chromium() -> str | None:
    """The Chromium executable: ``$COURSE_CHROMIUM``, else the first of CANDIDATES on PATH."""
    explicit = os.environ.get("COURSE_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def encode(message: dict) -> bytes:
    """One protocol message as it goes down the pipe: compact JSON, then a NUL byte."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\0"


class Splitter:
    """Cuts a byte stream into NUL-terminated JSON messages (a read may end mid-message)."""

    def __init__(self):
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[dict]:
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\0")
        return [json.loads(part) for part in complete if part]


def _high_fd(fd: int) -> int:
    """Move ``fd`` to a number >= 10 (close-on-exec), clear of the 3 and 4 the child needs."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Browser:
    """A browser process spoken to over the DevTools pipe; use :meth:`launch`."""

    def __init__(self, args: list[str], *, timeout: float = 15.0, user_data_dir: str | None = None):
        self.timeout = timeout
        self._owned_dir = None
        if user_data_dir is None:
            self._owned_dir = tempfile.mkdtemp(prefix="headless-profile-")
        to_child_r, to_child_w = (_high_fd(fd) for fd in os.pipe())
        from_child_r, from_child_w = (_high_fd(fd) for fd in os.pipe())

        def map_pipes():  # runs in the child between fork and exec
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        argv = list(args)
        if not any(a.startswith("--user-data-dir=") for a in argv):
            argv.append(f"--user-data-dir={user_data_dir or self._owned_dir}")
        try:
            # close_fds=False: the child must keep the 3 and 4 made in map_pipes; every other
            # descriptor Python opened is close-on-exec anyway (PEP 446).
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE, close_fds=False, preexec_fn=map_pipes)
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._write_fd = to_child_w
        self._read_fd = from_child_r
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self._events: queue.Queue = queue.Queue()
        self._cond = threading.Condition()
        self._closed = False
        self._stderr: list[bytes] = []
        threading.Thread(target=self._read_loop, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    @classmethod
    def launch(cls, executable: str, *, extra_flags=(), timeout: float = 15.0) -> Browser:
        """Start ``executable`` headless with the DevTools pipe and wait until it answers."""
        browser = cls([executable, *CHROMIUM_FLAGS, *extra_flags, "--remote-debugging-pipe", "about:blank"],
                      timeout=timeout)
        try:
            browser.call("Browser.getVersion", timeout=max(timeout, 30))  # a first start builds caches
        except BaseException:
            browser.close()
            raise
        return browser

    # --- the pipe -------------------------------------------------------------------
    def _read_loop(self):
        splitter = Splitter()
        while True:
            try:
                chunk = os.read(self._read_fd, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                break
            for message in splitter.feed(chunk):
                if "id" in message:
                    with self._cond:
                        self._replies[message["id"]] = message
                        self._cond.notify_all()
                else:
                    self._events.put(message)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _drain_stderr(self):
        for line in self.process.stderr:
            self._stderr.append(line)
            del self._stderr[:-20]

    def stderr_tail(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")

    def send(self, method: str, params: dict | None = None, session_id: str | None = None) -> int:
        """Send one command without waiting; return its id."""
        with self._cond:
            self._next_id += 1
            message_id = self._next_id
        message = {"id": message_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        try:
            os.write(self._write_fd, encode(message))
        except OSError as error:
            raise BrowserError(f"cannot send {method}: the browser is gone ({error}). "
                               f"stderr: {self.stderr_tail()[-2000:]}") from error
        return message_id

    def call(self, method: str, params: dict | None = None, session_id: str | None = None,
             timeout: float | None = None) -> dict:
        """Send a command and return its ``result``; BrowserError on error or time-out."""
        message_id = self.send(method, params, session_id)
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self._cond:
            while message_id not in self._replies:
                remaining = deadline - time.monotonic()
                if self._closed:
                    raise BrowserError(f"the browser closed its pipe while {method} was pending. "
                                       f"stderr: {self.stderr_tail()[-2000:]}")
                if remaining <= 0:
                    raise BrowserError(f"no reply to {method} within {limit:g} s")
                self._cond.wait(remaining)
            reply = self._replies.pop(message_id)
        if "error" in reply:
            raise BrowserError(f"{method} failed: {reply['error']}")
        return reply.get("result", {})

    def next_event(self, timeout: float) -> dict | None:
        """The next event from the browser, or None after ``timeout`` seconds."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    # --- pages ----------------------------------------------------------------------
    def new_page(self, width: int = 1280, height: int = 900) -> Page:
        """Open a tab, attach to it and enable the Page, Runtime, Log and Network domains."""
        target = self.call("Target.createTarget", {"url": "about:blank"})
        session = self.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, session["sessionId"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.call(f"{domain}.enable")
        page.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        return page

    def close(self, grace: float = 5.0):
        """Ask the browser to quit, kill it after ``grace`` seconds; remove its throw-away profile."""
        if self.process.poll() is None:
            try:
                self.send("Browser.close")
                self.process.wait(timeout=grace)
            except (BrowserError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(timeout=5)
        for fd in (self._write_fd, self._read_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        if self._owned_dir:
            shutil.rmtree(self._owned_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Page:
    """One tab: navigate, evaluate JavaScript, take screenshots; records what the page did.

    ``events`` holds every event of this tab since the last :meth:`navigate`, in order.
    """

    def __init__(self, browser: Browser, session_id: str):
        self.browser = browser
        self.session_id = session_id
        self.events: list[dict] = []

    def call(self, method: str, params: dict | None = None, timeout: float | None = None) -> dict:
        return self.browser.call(method, params, self.session_id, timeout)

    def _collect(self, until: str | None, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            event = self.browser.next_event(min(remaining, 0.5))
            if event is None:
                if self.browser._closed:
                    raise BrowserError(f"the browser died. stderr: {self.browser.stderr_tail()[-2000:]}")
                continue
            if event.get("sessionId") == self.session_id:
                self.events.append(event)
                if until and event.get("method") == until:
                    return True

    def navigate(self, url: str, timeout: float | None = None) -> None:
        """Open ``url`` and wait for its load event (BrowserError after ``timeout`` s)."""
        limit = self.browser.timeout if timeout is None else timeout
        while self.browser.next_event(0) is not None:  # drop late events of the previous page
            pass
        self.events = []
        result = self.call("Page.navigate", {"url": url}, timeout=limit)
        if result.get("errorText"):
            raise BrowserError(f"navigation to {url} failed: {result['errorText']}")
        if not self._collect("Page.loadEventFired", limit):
            raise BrowserError(f"{url} fired no load event within {limit:g} s")

    def settle(self, seconds: float = 0.2) -> None:
        """Collect the events that arrive within ``seconds`` (late console messages)."""
        self._collect(None, seconds)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (JSON-serialisable), awaiting promises."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"evaluating {expression[:80]!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: str | Path, full_page: bool = False) -> Path:
        """Save a PNG of the viewport (or of the whole page) to ``path``."""
        params = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    # --- what went wrong ------------------------------------------------------------
    def problems(self) -> list[str]:
        """JavaScript exceptions, console errors and log errors seen since navigate()."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                found.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                texts = [str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", [])]
                found.append(f"console.{params['type']}: {' '.join(texts)}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                found.append(f"log error ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")
        return found

    def requested_urls(self) -> list[str]:
        """Every URL the page requested since navigate(), in order."""
        return [event["params"]["request"]["url"] for event in self.events
                if event.get("method") == "Network.requestWillBeSent"]
