"""Snapshot tests of ``dify-plugin-client invoke`` text output (the Rust CLI's rendering is the reference).

Each case streams chunks from the fixture daemon and compares stdout and stderr with the files in
``tests/snapshots/`` byte for byte. Set ``UPDATE_SNAPSHOTS=1`` to rewrite them after a deliberate change.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from daemon_payloads import TENANT
from fixture_server import FixtureDaemon, error_body, sse_line, success_body
from test_cli import base, run

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
INVOKE = f"/plugin/{TENANT}/dispatch/tool/invoke"


def chunk(kind: str, message: object, meta: object = None) -> bytes:
    return sse_line(success_body({"type": kind, "message": message, "meta": meta}))


def text(value: str) -> bytes:
    return chunk("text", {"text": value})


PLUGIN_ERROR = sse_line(
    error_body(-500, "PluginInvokeError", json.dumps({"error_type": "ValueError", "message": "quota exhausted", "args": {}}))
)

CASES: dict[str, list[bytes]] = {
    # Text chunks run together; the open line is ended once at the end.
    "text_chunks": [text("Hel"), text("lo, "), text("world")],
    # A chunk that ends in a newline is not followed by a blank line.
    "text_ending_in_newline": [text("line one\n"), text("line two\n")],
    # Every kind of non-text chunk on a line of its own, text lines closed before them.
    "mixed_messages": [
        text("searching"),
        chunk("json", {"json_object": {"query": "hello", "hits": [1, 2], "note": "ü"}, "suppress_output": False}),
        text("found:\n"),
        chunk("link", {"text": "https://example.com/a"}),
        chunk("image", {"text": "https://example.com/i.png"}),
        chunk("blob", {"blob": base64.b64encode(b"\x89PNG....").decode()}, {"mime_type": "image/png"}),
        chunk("blob", {"blob": base64.b64encode(b"raw").decode()}),
        chunk("variable", {"variable_name": "count", "variable_value": 2, "stream": False}),
        text("done"),
    ],
    # An error after partial text: the text line is ended before the error is reported.
    "error_after_text": [text("partial answer"), PLUGIN_ERROR],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_invoke_text_output_matches_snapshot(daemon: FixtureDaemon, case: str) -> None:
    daemon.sse("POST", INVOKE, CASES[case])
    code, out, err = run([*base(daemon), "invoke", "acme/searcher/search", "search", "--no-validate"])
    rendered = f"exit: {code}\n--- stdout\n{out}--- stderr\n{err}"
    path = SNAPSHOTS / f"invoke_{case}.txt"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_text(rendered, encoding="utf-8")
    assert path.exists(), f"missing snapshot {path} (run with UPDATE_SNAPSHOTS=1 to create it)"
    assert rendered == path.read_text(encoding="utf-8")


def test_terminal_sees_error_on_its_own_line(daemon: FixtureDaemon) -> None:
    """stdout and stderr share a terminal: the text line must be ended before stderr is written."""
    daemon.sse("POST", INVOKE, CASES["error_after_text"])
    events: list[tuple[str, str]] = []

    class Tap:
        def __init__(self, name: str) -> None:
            self.name = name

        def write(self, data: str) -> int:
            events.append((self.name, data))
            return len(data)

        def flush(self) -> None:
            return None

    from dify_plugin_client.cli import main

    code = main([*base(daemon), "invoke", "acme/searcher/search", "search", "--no-validate"],
                environ={"HOME": "/nonexistent"}, stdout=Tap("out"), stderr=Tap("err"))  # type: ignore[arg-type]
    assert code == 1
    terminal = "".join(data for _, data in events)
    assert terminal.startswith("partial answer\nerror: ")
    first_err = next(i for i, (name, _) in enumerate(events) if name == "err")
    assert "".join(d for n, d in events[:first_err] if n == "out").endswith("\n")
