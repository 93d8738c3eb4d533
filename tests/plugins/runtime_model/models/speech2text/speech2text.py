from collections.abc import Mapping
from typing import IO

from dify_plugin import Speech2TextModel
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeBadRequestError, InvokeError


class EchoSpeech2TextModel(Speech2TextModel):
    """Transcribes audio by decoding its bytes as UTF-8 text."""

    def _invoke(self, model: str, credentials: dict, file: IO[bytes], user: str | None = None) -> str:
        audio = file.read()
        return f"heard {len(audio)} bytes: {audio.decode('utf-8', 'replace')}"

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        if credentials.get("api_key") == "bad":
            raise CredentialsValidateFailedError("api key rejected")

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return {InvokeBadRequestError: [ValueError]}
