from collections.abc import Mapping

from dify_plugin import ModerationModel
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeBadRequestError, InvokeError


class EchoModerationModel(ModerationModel):
    """Flags a text that contains the word `forbidden`."""

    def _invoke(self, model: str, credentials: dict, text: str, user: str | None = None) -> bool:
        return "forbidden" in text.lower().split()

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        if credentials.get("api_key") == "bad":
            raise CredentialsValidateFailedError("api key rejected")

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return {InvokeBadRequestError: [ValueError]}
