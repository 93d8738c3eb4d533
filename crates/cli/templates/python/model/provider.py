import logging
from collections.abc import Mapping

from dify_plugin import ModelProvider
from dify_plugin.errors.model import CredentialsValidateFailedError

logger = logging.getLogger(__name__)


class {{class_prefix}}ModelProvider(ModelProvider):
    def validate_provider_credentials(self, credentials: Mapping) -> None:
        # Call the model API once with `credentials` and raise CredentialsValidateFailedError
        # when it refuses them.
        try:
            return None
        except Exception as e:
            logger.exception("credential check failed")
            raise CredentialsValidateFailedError(str(e)) from e
