import time
from collections.abc import Mapping
from decimal import Decimal

from dify_plugin import TextEmbeddingModel
from dify_plugin.entities.model import EmbeddingInputType
from dify_plugin.entities.model.text_embedding import EmbeddingUsage, TextEmbeddingResult
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeBadRequestError, InvokeError


class EchoTextEmbeddingModel(TextEmbeddingModel):
    """Embeds a text as [number of characters, number of words, position]."""

    def _invoke(
        self,
        model: str,
        credentials: dict,
        texts: list[str],
        user: str | None = None,
        input_type: EmbeddingInputType = EmbeddingInputType.DOCUMENT,
    ) -> TextEmbeddingResult:
        started = time.perf_counter()
        embeddings = [[float(len(t)), float(len(t.split())), float(i)] for i, t in enumerate(texts)]
        tokens = sum(len(t.split()) for t in texts)
        usage = EmbeddingUsage(
            tokens=tokens,
            total_tokens=tokens,
            unit_price=Decimal("0.0001"),
            price_unit=Decimal("0.001"),
            total_price=Decimal("0.0001") * tokens * Decimal("0.001"),
            currency="USD",
            latency=time.perf_counter() - started,
        )
        return TextEmbeddingResult(model=model, embeddings=embeddings, usage=usage)

    def get_num_tokens(self, model: str, credentials: dict, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        if credentials.get("api_key") == "bad":
            raise CredentialsValidateFailedError("api key rejected")

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return {InvokeBadRequestError: [ValueError]}
