"""A hostile tool: every attempt reports `succeeded` (bad for the daemon) and what happened."""

import ctypes
import json
import os
import signal
import time
from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities.tool import ToolInvokeMessage

PTRACE_ATTACH = 16
PTRACE_DETACH = 17


def _read(path: str) -> dict:
    try:
        if os.path.isdir(path):
            names = os.listdir(path)
            return {"target": path, "succeeded": True, "detail": f"listed {len(names)} entries"}
        with open(path, "rb") as handle:
            data = handle.read(256)
        return {"target": path, "succeeded": True, "detail": f"read {len(data)} bytes: {data[:64]!r}"}
    except Exception as error:  # noqa: BLE001 - every failure is the expected outcome
        return {"target": path, "succeeded": False, "detail": repr(error)}


def _write(directory: str) -> dict:
    path = os.path.join(directory, f"hostile-{os.getpid()}.txt")
    try:
        with open(path, "w") as handle:
            handle.write("owned")
        os.unlink(path)
        return {"target": directory, "succeeded": True, "detail": "created a file"}
    except Exception as error:  # noqa: BLE001
        return {"target": directory, "succeeded": False, "detail": repr(error)}


def _signal(pid: int) -> dict:
    try:
        os.kill(pid, signal.SIGKILL)
        return {"target": pid, "succeeded": True, "detail": "SIGKILL delivered"}
    except Exception as error:  # noqa: BLE001
        return {"target": pid, "succeeded": False, "detail": repr(error)}


def _ptrace(pid: int) -> dict:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    result = libc.ptrace(PTRACE_ATTACH, pid, None, None)
    if result == 0:
        time.sleep(0.1)
        libc.ptrace(PTRACE_DETACH, pid, None, None)
        return {"target": pid, "succeeded": True, "detail": "attached"}
    return {"target": pid, "succeeded": False, "detail": os.strerror(ctypes.get_errno())}


def _fork(count: int) -> dict:
    children = []
    error = None
    try:
        for _ in range(count):
            children.append(os.posix_spawn("/bin/sleep", ["sleep", "60"], {}))
    except Exception as failure:  # noqa: BLE001
        error = repr(failure)
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except Exception:  # noqa: BLE001
            pass
    return {"target": count, "succeeded": len(children) >= count, "detail": f"started {len(children)}; {error}"}


def _memory(mebibytes: int) -> dict:
    blocks = []
    try:
        for _ in range(mebibytes // 16):
            # Repetition writes every byte, so the pages are really used.
            blocks.append(bytearray(b"\x01") * (16 << 20))
        return {"target": mebibytes, "succeeded": True, "detail": f"holding {len(blocks) * 16} MiB"}
    except MemoryError as error:
        held = len(blocks) * 16
        blocks.clear()
        return {"target": mebibytes, "succeeded": False, "detail": f"MemoryError after {held} MiB: {error!r}"}


class AttackTool(Tool):
    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        attack = tool_parameters.get("attack") or "self"
        targets = json.loads(tool_parameters.get("targets") or "[]")
        count = int(tool_parameters.get("count") or 0)
        if attack == "self":
            results = [{"target": "self", "succeeded": False, "detail": json.dumps({
                "uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(), "cwd": os.getcwd(),
                "tmp": sorted(os.listdir("/tmp"))[:20], "tmpdir": os.environ.get("TMPDIR"),
                "siblings": sorted(os.listdir(os.path.dirname(os.getcwd())))[:20],
            })}]
        elif attack == "read":
            results = [_read(str(t)) for t in targets]
        elif attack == "write":
            results = [_write(str(t)) for t in targets]
        elif attack == "signal":
            results = [_signal(int(t)) for t in targets]
        elif attack == "ptrace":
            results = [_ptrace(int(t)) for t in targets]
        elif attack == "fork":
            results = [_fork(count)]
        elif attack == "memory":
            results = [_memory(count)]
        else:
            raise ValueError(f"unknown attack {attack}")
        yield self.create_json_message({"attack": attack, "results": results})
