import time
from collections.abc import Mapping
from decimal import Decimal

from dify_plugin import TextEmbeddingModel
from dify_plugin.entities.model import EmbeddingInputType
from dify_plugin.entities.model.text_embedding import (
    EmbeddingUsage,
    MultiModalContent,
    MultiModalEmbeddingResult,
    TextEmbeddingResult,
)
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeBadRequestError, InvokeError


def _usage(tokens: int, started: float) -> EmbeddingUsage:
    return EmbeddingUsage(
        tokens=tokens,
        total_tokens=tokens,
        unit_price=Decimal("0.0001"),
        price_unit=Decimal("0.001"),
        total_price=Decimal("0.0001") * tokens * Decimal("0.001"),
        currency="USD",
        latency=time.perf_counter() - started,
    )


class EchoTextEmbeddingModel(TextEmbeddingModel):
    """Embeds a text as [number of characters, number of words, position]; a multimodal document as
    [length of its content, 1 for an image else 0, position]."""

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
        return TextEmbeddingResult(model=model, embeddings=embeddings, usage=_usage(tokens, started))

    def _invoke_multimodal(
        self,
        model: str,
        credentials: dict,
        documents: list[MultiModalContent],
        user: str | None = None,
        input_type: EmbeddingInputType = EmbeddingInputType.DOCUMENT,
    ) -> MultiModalEmbeddingResult:
        started = time.perf_counter()
        embeddings = [
            [float(len(d.content)), 1.0 if d.content_type == "image" else 0.0, float(i)] for i, d in enumerate(documents)
        ]
        return MultiModalEmbeddingResult(model=model, embeddings=embeddings, usage=_usage(len(documents), started))

    def get_num_tokens(self, model: str, credentials: dict, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        if credentials.get("api_key") == "bad":
            raise CredentialsValidateFailedError("api key rejected")

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return {InvokeBadRequestError: [ValueError]}
