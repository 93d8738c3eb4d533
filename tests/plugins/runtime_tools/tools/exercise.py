import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities import I18nObject, ParameterOption
from dify_plugin.config.logger_format import plugin_logger_handler
from dify_plugin.entities.model.llm import LLMModelConfig
from dify_plugin.entities.model.message import UserPromptMessage
from dify_plugin.entities.model.text_embedding import TextEmbeddingModelConfig
from dify_plugin.entities.tool import ToolInvokeMessage


class ExerciseTool(Tool):
    """Test tool: `mode` selects what the daemon's runtime tests need to observe."""

    def _fetch_parameter_options(self, parameter: str) -> list[ParameterOption]:
        """Dynamic select options named after the parameter and the `token` credential."""
        token = str(self.runtime.credentials.get("token") or "none")
        return [
            ParameterOption(value=f"{parameter}-{token}-{i}", label=I18nObject(en_US=f"{parameter} {i}")) for i in (1, 2)
        ]

    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        mode = tool_parameters.get("mode") or "echo"
        text = str(tool_parameters.get("text") or "")
        count = int(tool_parameters.get("count") or 0)
        key = str(tool_parameters.get("key") or "k")

        if mode == "echo":
            yield self.create_text_message(f"echo: {text}")
        elif mode == "kinds":
            yield self.create_text_message(text)
            yield self.create_json_message({"text": text, "length": len(text)})
            yield self.create_link_message("https://example.com/link")
            yield self.create_image_message("https://example.com/image.png")
            yield self.create_variable_message("upper", text.upper())
            yield self.create_log_message("step", {"detail": text})
        elif mode == "blob":
            data = bytes((i * 7 + 3) % 251 for i in range(count))
            yield self.create_text_message(hashlib.sha256(data).hexdigest())
            yield self.create_blob_message(data, meta={"mime_type": "application/octet-stream"})
        elif mode == "stream":
            for i in range(count):
                yield self.create_text_message(f"chunk {i}")
        elif mode == "raise":
            yield self.create_text_message("about to fail")
            raise ValueError(f"requested failure: {text}")
        elif mode == "storage":
            value = text.encode()
            exists_before = self.session.storage.exist(key)
            self.session.storage.set(key, value)
            read_back = self.session.storage.get(key).decode()
            exists_after = self.session.storage.exist(key)
            self.session.storage.delete(key)
            exists_deleted = self.session.storage.exist(key)
            yield self.create_json_message(
                {
                    "exists_before": exists_before,
                    "read_back": read_back,
                    "exists_after": exists_after,
                    "exists_deleted": exists_deleted,
                }
            )
        elif mode == "storage_set":
            self.session.storage.set(key, b"x" * count)
            yield self.create_text_message("stored")
        elif mode == "backwards_tool":
            for message in self.session.tool.invoke_builtin_tool("fake/provider", "fake_tool", {"q": text}):
                yield self.create_json_message({"from_dify": message.model_dump(mode="json")})
        elif mode == "backwards_llm":
            config = LLMModelConfig(provider="fake/provider", model="fake-model", mode="chat", completion_params={})
            pieces = []
            for chunk in self.session.model.llm.invoke(config, [UserPromptMessage(content=text)], stream=True):
                pieces.append(chunk.delta.message.content)
            yield self.create_text_message("".join(pieces))
        elif mode == "backwards_denied":
            # The manifest grants no text-embedding permission: the daemon must refuse the call.
            config = TextEmbeddingModelConfig(provider="fake/provider", model="fake-embedding")
            try:
                self.session.model.text_embedding.invoke(config, ["a"])
                yield self.create_text_message("allowed")
            except Exception as error:  # noqa: BLE001 - the refusal is what the test checks
                yield self.create_text_message(f"refused: {error}")
        elif mode == "write_file":
            # Writes into the plugin's working directory (its current directory), then tries its
            # environment, which may be shared with other plugins.
            os.makedirs("notes", exist_ok=True)
            with open(os.path.join("notes", f"{text}.txt"), "w") as note:
                note.write(text)
            with open(os.path.join("notes", f"{text}.txt")) as note:
                read_back = note.read()
            try:
                with open(os.path.join(sys.prefix, "intruder.txt"), "w") as intruder:
                    intruder.write(text)
                environment_written = True
            except OSError:
                environment_written = False
            yield self.create_json_message(
                {"read_back": read_back, "cwd": os.getcwd(), "prefix": sys.prefix, "environment_written": environment_written}
            )
        elif mode == "env":
            yield self.create_json_message({"env": dict(os.environ)})
        elif mode == "log":
            # One stderr line and one `log` event (the SDK's logger handler), for the daemon's log ring.
            print(f"stderr says: {text}", file=sys.stderr, flush=True)
            logger = logging.getLogger("runtime_tools.exercise")
            if plugin_logger_handler not in logger.handlers:
                logger.addHandler(plugin_logger_handler)
            logger.warning("logger says: %s", text)
            yield self.create_text_message("logged")
        elif mode == "exit":
            yield self.create_text_message("exiting")
            time.sleep(0.2)
            os._exit(3)
        elif mode == "sleep":
            yield self.create_text_message("sleeping")
            time.sleep(count)
            yield self.create_text_message("woke up")
        elif mode == "big_line":
            yield self.create_text_message("x" * count)
        else:
            yield self.create_text_message(json.dumps({"unknown_mode": mode}))
