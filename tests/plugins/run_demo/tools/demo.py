import logging
import sys
import time
from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.config.logger_format import plugin_logger_handler
from dify_plugin.entities.model.llm import LLMModelConfig
from dify_plugin.entities.model.message import UserPromptMessage
from dify_plugin.entities.tool import ToolInvokeMessage

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)
logger.addHandler(plugin_logger_handler)


class DemoTool(Tool):
    """Test tool for `dify plugin run`: `mode` selects the behaviour, `delay_ms` delays the answer."""

    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        mode = tool_parameters.get("mode") or "echo"
        text = str(tool_parameters.get("text") or "")
        key = str(tool_parameters.get("key") or "k")
        delay_ms = int(tool_parameters.get("delay_ms") or 0)
        if delay_ms > 0:
            time.sleep(delay_ms / 1000)

        if mode == "echo":
            yield self.create_text_message(f"echo: {text}")
        elif mode == "raise":
            raise ValueError(f"demo failure: {text}")
        elif mode == "log":
            logger.info("demo log line: %s", text)
            print(f"demo stderr line: {text}", file=sys.stderr, flush=True)
            yield self.create_text_message("logged")
        elif mode == "storage_set":
            self.session.storage.set(key, text.encode())
            yield self.create_text_message("stored")
        elif mode == "storage_get":
            yield self.create_text_message(f"value: {self.session.storage.get(key).decode()}")
        elif mode == "llm":
            config = LLMModelConfig(provider="fake/provider", model="fake-model", mode="chat", completion_params={})
            pieces = [chunk.delta.message.content for chunk in self.session.model.llm.invoke(config, [UserPromptMessage(content=text)], stream=True)]
            yield self.create_text_message("llm: " + "".join(pieces))
        elif mode == "tool":
            for message in self.session.tool.invoke_builtin_tool("fake/provider", "fake_tool", {"q": text}):
                yield self.create_json_message({"from_tool": message.model_dump(mode="json")})
        else:
            yield self.create_text_message(f"unknown mode: {mode}")
