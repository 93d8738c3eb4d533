from collections.abc import Mapping

from dify_plugin import ModerationModel
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeError, InvokeServerUnavailableError

# Words that make a text "unsafe" in this starting point; a real plugin calls a moderation API.
BLOCKED_WORDS = {"forbidden"}


class {{class_prefix}}ModerationModel(ModerationModel):
    def _invoke(self, model: str, credentials: dict, text: str, user: str | None = None) -> bool:
        return any(word in text.lower() for word in BLOCKED_WORDS)

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        try:
            return None
        except Exception as e:
            raise CredentialsValidateFailedError(str(e)) from e

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return {InvokeServerUnavailableError: [ConnectionError]}
