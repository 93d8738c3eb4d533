from collections.abc import Mapping
from typing import IO

from dify_plugin import Speech2TextModel
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeError, InvokeServerUnavailableError


class {{class_prefix}}Speech2TextModel(Speech2TextModel):
    """Describes the audio instead of transcribing it; replace it with calls to a real API."""

    def _invoke(self, model: str, credentials: dict, file: IO[bytes], user: str | None = None) -> str:
        size = len(file.read())
        return f"received {size} bytes of audio"

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        try:
            return None
        except Exception as e:
            raise CredentialsValidateFailedError(str(e)) from e

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return {InvokeServerUnavailableError: [ConnectionError]}
