from collections.abc import Generator
from typing import Any

from dify_plugin.entities.agent import AgentInvokeMessage
from dify_plugin.interfaces.agent import AgentStrategy


class {{class_prefix}}AgentStrategy(AgentStrategy):
    def _invoke(self, parameters: dict[str, Any]) -> Generator[AgentInvokeMessage, None, None]:
        # A real strategy calls self.session.model.llm.invoke(...) with parameters["model"] and
        # the selected tools in a loop; this starting point only answers with the query.
        query = str(parameters.get("query", ""))
        yield self.create_text_message(f"{{plugin_name}} strategy received: {query}")
