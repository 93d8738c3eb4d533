import io
import wave
from collections.abc import Generator, Mapping

from dify_plugin import TTSModel
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeError, InvokeServerUnavailableError


def _silence(seconds: float) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x00\x00" * int(8000 * seconds))
    return buffer.getvalue()


class {{class_prefix}}TTSModel(TTSModel):
    """Returns silence as long as the text would take to read; replace it with a real API."""

    def _invoke(
        self,
        model: str,
        tenant_id: str,
        credentials: dict,
        content_text: str,
        voice: str,
        user: str | None = None,
    ) -> bytes | Generator[bytes, None, None]:
        seconds = max(0.1, len(content_text.split()) * 0.3)
        yield _silence(seconds)

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        try:
            return None
        except Exception as e:
            raise CredentialsValidateFailedError(str(e)) from e

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return {InvokeServerUnavailableError: [ConnectionError]}
