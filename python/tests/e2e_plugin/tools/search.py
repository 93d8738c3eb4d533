from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities.tool import ToolInvokeMessage


class SearchTool(Tool):
    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        query = str(tool_parameters["query"])
        limit = int(tool_parameters.get("limit") or 2)
        loud = tool_parameters.get("style") == "loud"
        for rank in range(1, limit + 1):
            line = f"result {rank} for {query}\n"
            yield self.create_text_message(line.upper() if loud else line)
        yield self.create_json_message({"query": query, "limit": limit, "types": {
            "limit": type(tool_parameters.get("limit")).__name__}})
