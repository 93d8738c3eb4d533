from collections.abc import Generator, Mapping

from dify_plugin import LargeLanguageModel
from dify_plugin.entities.model.llm import LLMResult, LLMResultChunk, LLMResultChunkDelta
from dify_plugin.entities.model.message import AssistantPromptMessage, PromptMessage, PromptMessageTool
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeBadRequestError, InvokeError


def _last_text(prompt_messages: list[PromptMessage]) -> str:
    for message in reversed(prompt_messages):
        if isinstance(message.content, str):
            return message.content
    return ""


class EchoLargeLanguageModel(LargeLanguageModel):
    """Streams the words of the last prompt message back, one chunk per word."""

    def _invoke(
        self,
        model: str,
        credentials: dict,
        prompt_messages: list[PromptMessage],
        model_parameters: dict,
        tools: list[PromptMessageTool] | None = None,
        stop: list[str] | None = None,
        stream: bool = True,
        user: str | None = None,
    ) -> LLMResult | Generator[LLMResultChunk, None, None]:
        text = _last_text(prompt_messages)
        if text == "fail":
            raise ValueError("the echo model was asked to fail")
        words = text.split()
        usage = self._calc_response_usage(model, credentials, len(words), len(words))
        if not stream:
            return LLMResult(model=model, prompt_messages=[], message=AssistantPromptMessage(content=text), usage=usage)

        def chunks() -> Generator[LLMResultChunk, None, None]:
            for index, word in enumerate(words):
                last = index == len(words) - 1
                yield LLMResultChunk(
                    model=model,
                    prompt_messages=[],
                    delta=LLMResultChunkDelta(
                        index=index,
                        message=AssistantPromptMessage(content=word if index == 0 else " " + word),
                        usage=usage if last else None,
                        finish_reason="stop" if last else None,
                    ),
                )

        return chunks()

    def get_num_tokens(
        self,
        model: str,
        credentials: dict,
        prompt_messages: list[PromptMessage],
        tools: list[PromptMessageTool] | None = None,
    ) -> int:
        return sum(len(str(m.content or "").split()) for m in prompt_messages)

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        if credentials.get("api_key") == "bad":
            raise CredentialsValidateFailedError("api key rejected")

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return {InvokeBadRequestError: [ValueError]}
