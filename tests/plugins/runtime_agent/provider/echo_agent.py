from dify_plugin.interfaces.agent import AgentProvider


class EchoAgentProvider(AgentProvider):
    pass
