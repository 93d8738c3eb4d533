from collections.abc import Mapping

from dify_plugin import RerankModel
from dify_plugin.entities.model.rerank import RerankDocument, RerankResult
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeError, InvokeServerUnavailableError


class {{class_prefix}}RerankModel(RerankModel):
    """Scores documents by word overlap with the query; replace it with calls to a real API."""

    def _invoke(
        self,
        model: str,
        credentials: dict,
        query: str,
        docs: list[str],
        score_threshold: float | None = None,
        top_n: int | None = None,
        user: str | None = None,
    ) -> RerankResult:
        words = set(query.lower().split())
        scored = []
        for index, text in enumerate(docs):
            doc_words = set(text.lower().split())
            score = len(words & doc_words) / len(words) if words else 0.0
            if score_threshold is None or score >= score_threshold:
                scored.append(RerankDocument(index=index, text=text, score=score))
        scored.sort(key=lambda d: d.score, reverse=True)
        if top_n is not None:
            scored = scored[:top_n]
        return RerankResult(model=model, docs=scored)

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        try:
            return None
        except Exception as e:
            raise CredentialsValidateFailedError(str(e)) from e

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return {InvokeServerUnavailableError: [ConnectionError]}
