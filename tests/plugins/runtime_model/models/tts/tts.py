from collections.abc import Generator, Mapping

from dify_plugin import TTSModel
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeBadRequestError, InvokeError


class EchoTTSModel(TTSModel):
    """Speaks the text as its UTF-8 bytes, one chunk per word; the `loud` voice upper-cases it."""

    def _invoke(
        self,
        model: str,
        tenant_id: str,
        credentials: dict,
        content_text: str,
        voice: str,
        user: str | None = None,
    ) -> Generator[bytes, None, None]:
        text = content_text.upper() if voice == "loud" else content_text
        words = text.split()

        def chunks() -> Generator[bytes, None, None]:
            for index, word in enumerate(words):
                yield (word if index == 0 else " " + word).encode()

        return chunks()

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        if credentials.get("api_key") == "bad":
            raise CredentialsValidateFailedError("api key rejected")

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return {InvokeBadRequestError: [ValueError]}
