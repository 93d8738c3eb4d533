import hashlib
import time
from collections.abc import Mapping
from decimal import Decimal

from dify_plugin import TextEmbeddingModel
from dify_plugin.entities.model import EmbeddingInputType
from dify_plugin.entities.model.text_embedding import EmbeddingUsage, TextEmbeddingResult
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeError, InvokeServerUnavailableError

DIMENSIONS = 8


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [b / 255.0 for b in digest[:DIMENSIONS]]


class {{class_prefix}}TextEmbeddingModel(TextEmbeddingModel):
    """Deterministic hash vectors; replace them with calls to a real embedding API."""

    def _invoke(
        self,
        model: str,
        credentials: dict,
        texts: list[str],
        user: str | None = None,
        input_type: EmbeddingInputType = EmbeddingInputType.DOCUMENT,
    ) -> TextEmbeddingResult:
        started = time.perf_counter()
        tokens = sum(self.get_num_tokens(model, credentials, texts))
        usage = EmbeddingUsage(
            tokens=tokens,
            total_tokens=tokens,
            unit_price=Decimal("0"),
            price_unit=Decimal("0.001"),
            total_price=Decimal("0"),
            currency="USD",
            latency=time.perf_counter() - started,
        )
        return TextEmbeddingResult(model=model, embeddings=[_vector(t) for t in texts], usage=usage)

    def get_num_tokens(self, model: str, credentials: dict, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        try:
            return None
        except Exception as e:
            raise CredentialsValidateFailedError(str(e)) from e

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return {InvokeServerUnavailableError: [ConnectionError]}
