from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities.tool import ToolInvokeMessage


class ReportTool(Tool):
    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        size = int(tool_parameters["size"])
        body = bytes(i % 251 for i in range(size))
        compressed = tool_parameters.get("compressed") is True
        yield self.create_link_message("https://example.invalid/report")
        yield self.create_variable_message("compressed", compressed)
        yield self.create_blob_message(body, meta={"mime_type": "application/octet-stream", "size": size})
