"""Load a page in headless Chromium and report what a reader's browser would show.

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe``: commands
go in on file descriptor 3 and answers come out on 4, each a JSON object ended by a NUL byte,
so the standard library is enough (no WebSocket client, no browser download). Debian's
``chromium`` package provides the browser (scripts/install.sh --test installs it).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    """Path of the Chromium binary, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageResult:
    """What loading one page gave."""

    url: str
    loaded: bool = False
    #: ``(kind, text)`` for console errors, uncaught exceptions and failed loads.
    errors: list[tuple[str, str]] = field(default_factory=list)
    #: Every URL the page requested.
    requests: list[str] = field(default_factory=list)
    #: Values of the JavaScript expressions passed to :func:`load_page`, by name.
    values: dict[str, object] = field(default_factory=dict)


class _Pipe:
    def __init__(self, browser: str, user_data_dir: str):
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire_fds():  # the child's fd 3 reads our commands, fd 4 carries its answers
            # Copies above 9 first, so that neither dup2 can overwrite the other pipe end.
            read_end = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.proc = subprocess.Popen(
            [browser, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # 3 and 4 must survive the close of inherited fds that follows preexec_fn.
            pass_fds=sorted({3, 4, to_child_r, from_child_w}),
            preexec_fn=wire_fds,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        import select

        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 16)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(
        self,
        method: str,
        params: dict | None = None,
        session: str | None = None,
        timeout: float = 30.0,
    ) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            try:
                self.events.append(self._read_message(deadline))
            except TimeoutError:
                return False
        return True

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except TimeoutError:
            pass

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)


def load_page(
    url: str,
    expressions: dict[str, str],
    *,
    browser: str | None = None,
    timeout: float = 60.0,
    settle: float = 1.0,
) -> PageResult:
    """Open ``url`` in a fresh headless Chromium, wait for its load event, then evaluate
    each JavaScript expression of ``expressions`` (name -> expression) in the page.

    ``settle`` seconds after the load event collect late console messages (scripts that run
    after ``load``, such as the search index).
    """
    browser = browser or find_chromium()
    if browser is None:
        raise FileNotFoundError("no chromium binary on PATH (apt-get install chromium)")
    result = PageResult(url)
    with tempfile.TemporaryDirectory(prefix="convjax-chromium-") as profile:
        pipe = _Pipe(browser, profile)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)
            session = pipe.call(
                "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
            )["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                pipe.call(f"{domain}.enable", session=session)
            pipe.call("Page.navigate", {"url": url}, session=session)
            result.loaded = pipe.wait_for("Page.loadEventFired", timeout)
            pipe.drain(settle)
            for name, expression in expressions.items():
                value = pipe.call(
                    "Runtime.evaluate",
                    {"expression": expression, "returnByValue": True},
                    session=session,
                )
                result.values[name] = value.get("result", {}).get("value")
        finally:
            pipe.close()
    for event in pipe.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(
                str(a.get("value", a.get("description", ""))) for a in params.get("args", [])
            )
            result.errors.append(("console", text))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            result.errors.append(("exception", text))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            result.errors.append(("log", f"{entry.get('text')} ({entry.get('url', '')})"))
        elif method == "Network.loadingFailed":
            result.errors.append(("network", params.get("errorText", "")))
        elif method == "Network.requestWillBeSent":
            result.requests.append(params.get("request", {}).get("url", ""))
    return result
