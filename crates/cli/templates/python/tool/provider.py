from typing import Any

from dify_plugin import ToolProvider
from dify_plugin.errors.tool import ToolProviderCredentialValidationError


class {{class_prefix}}Provider(ToolProvider):
    def _validate_credentials(self, credentials: dict[str, Any]) -> None:
        # Check the credentials declared in provider/{{plugin_name}}.yaml here, e.g. by calling
        # the remote API once; raise ToolProviderCredentialValidationError when they are wrong.
        try:
            return None
        except Exception as e:
            raise ToolProviderCredentialValidationError(str(e)) from e
