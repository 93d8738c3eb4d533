import hashlib
from collections.abc import Generator

from dify_plugin.entities.agent import AgentInvokeMessage
from dify_plugin.interfaces.agent import AgentStrategy


class EchoAgentStrategy(AgentStrategy):
    def _invoke(self, parameters: dict) -> Generator[AgentInvokeMessage, None, None]:
        query = str(parameters.get("query") or "")
        size = int(parameters.get("blob_size") or 0)
        yield self.create_log_message("thinking", {"query": query})
        yield self.create_text_message(f"agent: {query}")
        if size:
            data = bytes((i * 13 + 1) % 256 for i in range(size))
            yield self.create_json_message({"sha256": hashlib.sha256(data).hexdigest(), "size": size})
            yield self.create_blob_message(data, meta={"mime_type": "application/octet-stream", "filename": "data.bin"})
        yield self.create_text_message("done")
