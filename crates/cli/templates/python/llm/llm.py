from collections.abc import Generator, Mapping

from dify_plugin import LargeLanguageModel
from dify_plugin.entities import I18nObject
from dify_plugin.entities.model import AIModelEntity, FetchFrom, ModelType
from dify_plugin.entities.model.llm import LLMResult, LLMResultChunk, LLMResultChunkDelta, LLMUsage
from dify_plugin.entities.model.message import AssistantPromptMessage, PromptMessage, PromptMessageTool
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeError, InvokeServerUnavailableError


def _text_of(message: PromptMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    return "".join(getattr(part, "data", "") for part in content)


class {{class_prefix}}LargeLanguageModel(LargeLanguageModel):
    """A model that answers with the last prompt message; replace it with calls to a real API."""

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
        answer = _text_of(prompt_messages[-1]) if prompt_messages else ""
        if not stream:
            return LLMResult(
                model=model,
                prompt_messages=prompt_messages,
                message=AssistantPromptMessage(content=answer),
                usage=LLMUsage.empty_usage(),
            )
        return self._stream(model, prompt_messages, answer)

    def _stream(
        self, model: str, prompt_messages: list[PromptMessage], answer: str
    ) -> Generator[LLMResultChunk, None, None]:
        words = answer.split(" ")
        for index, word in enumerate(words):
            last = index == len(words) - 1
            yield LLMResultChunk(
                model=model,
                prompt_messages=prompt_messages,
                delta=LLMResultChunkDelta(
                    index=index,
                    message=AssistantPromptMessage(content=word if last else word + " "),
                    usage=LLMUsage.empty_usage() if last else None,
                    finish_reason="stop" if last else None,
                ),
            )

    def get_num_tokens(
        self,
        model: str,
        credentials: dict,
        prompt_messages: list[PromptMessage],
        tools: list[PromptMessageTool] | None = None,
    ) -> int:
        return sum(len(_text_of(m).split()) for m in prompt_messages)

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        try:
            return None
        except Exception as e:
            raise CredentialsValidateFailedError(str(e)) from e

    def get_customizable_model_schema(self, model: str, credentials: Mapping) -> AIModelEntity:
        return AIModelEntity(
            model=model,
            label=I18nObject(en_US=model),
            model_type=ModelType.LLM,
            features=[],
            fetch_from=FetchFrom.CUSTOMIZABLE_MODEL,
            model_properties={},
            parameter_rules=[],
        )

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return {InvokeServerUnavailableError: [ConnectionError]}
