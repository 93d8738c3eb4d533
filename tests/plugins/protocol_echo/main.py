"""A plugin process written without the SDK: it speaks the stdio protocol by hand and answers every
request with the exact line it received, so tests can check what the daemon sends for each route."""

import json
import sys
import threading
import time

_write_lock = threading.Lock()


def send(message: dict) -> None:
    with _write_lock:
        sys.stdout.write(json.dumps(message) + "\n\n")
        sys.stdout.flush()


def heartbeat() -> None:
    while True:
        send({"event": "heartbeat", "session_id": None, "data": {}})
        time.sleep(5)


def main() -> None:
    threading.Thread(target=heartbeat, daemon=True).start()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        message = json.loads(line)
        if message.get("event") != "request":
            continue
        session_id = message["session_id"]
        data = message["data"]
        if data.get("action") in ("invoke_tool", "invoke_agent_strategy"):
            item = {"type": "text", "message": {"text": line}, "meta": None}
        else:
            item = {"raw": line}
        send({"event": "session", "session_id": session_id, "data": {"type": "stream", "data": item}})
        send({"event": "session", "session_id": session_id, "data": {"type": "end", "data": {}}})


if __name__ == "__main__":
    main()
