from collections.abc import Mapping, Sequence

from dify_plugin import RerankModel
from dify_plugin.entities.model.rerank import MultiModalRerankResult, RerankDocument, RerankResult
from dify_plugin.entities.model.text_embedding import MultiModalContent
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeBadRequestError, InvokeError


def _rank(query: str, docs: Sequence[str], score_threshold: float | None, top_n: int | None) -> list[RerankDocument]:
    """Scores a document by the share of the query's words it contains; best first."""
    words = set(query.split())
    ranked = [
        RerankDocument(index=i, text=doc, score=len(words & set(doc.split())) / max(len(words), 1))
        for i, doc in enumerate(docs)
    ]
    ranked.sort(key=lambda d: (-d.score, d.index))
    if score_threshold is not None:
        ranked = [d for d in ranked if d.score >= score_threshold]
    return ranked[:top_n] if top_n is not None else ranked


class EchoRerankModel(RerankModel):
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
        return RerankResult(model=model, docs=_rank(query, docs, score_threshold, top_n))

    def _invoke_multimodal(
        self,
        model: str,
        credentials: dict,
        query: MultiModalContent,
        docs: Sequence[MultiModalContent],
        score_threshold: float | None = None,
        top_n: int | None = None,
        user: str | None = None,
    ) -> MultiModalRerankResult:
        texts = [f"{d.content} ({d.content_type})" for d in docs]
        return MultiModalRerankResult(model=model, docs=_rank(query.content, texts, score_threshold, top_n))

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        if credentials.get("api_key") == "bad":
            raise CredentialsValidateFailedError("api key rejected")

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return {InvokeBadRequestError: [ValueError]}
