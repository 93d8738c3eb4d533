import importlib.metadata
import os
import sys
from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities.tool import ToolInvokeMessage


class ProbeTool(Tool):
    """Answers with how this process was started and what it runs with."""

    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        main = sys.modules.get("__main__")
        try:
            os.listdir("/root")
            root_listable = True
        except OSError:
            root_listable = False
        yield self.create_json_message(
            {
                "pid": os.getpid(),
                "ppid": os.getppid(),
                "pgid": os.getpgid(0),
                "sdk_preloaded": bool(getattr(main, "SDK_PRELOADED", None)),
                "cwd": os.getcwd(),
                "install_method": os.environ.get("INSTALL_METHOD"),
                "idna": importlib.metadata.version("idna"),
                "executable": sys.executable,
                "uid": os.getuid(),
                "home": os.environ.get("HOME"),
                "root_listable": root_listable,
                "no_new_privs": _status_field("NoNewPrivs"),
                "pycache_prefix": sys.pycache_prefix,
            }
        )


def _status_field(name: str) -> str | None:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return None
