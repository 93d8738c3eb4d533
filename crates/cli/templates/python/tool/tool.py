from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities.tool import ToolInvokeMessage


class {{class_prefix}}Tool(Tool):
    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        query = str(tool_parameters.get("query", ""))
        # Replace this with the real work of the tool.
        yield self.create_text_message(f"{{plugin_name}} received: {query}")
        yield self.create_json_message({"query": query, "length": len(query)})
