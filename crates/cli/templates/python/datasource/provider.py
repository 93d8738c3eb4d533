from collections.abc import Mapping
from typing import Any

from dify_plugin.errors.tool import ToolProviderCredentialValidationError
from dify_plugin.interfaces.datasource import DatasourceProvider


class {{class_prefix}}DatasourceProvider(DatasourceProvider):
    def _validate_credentials(self, credentials: Mapping[str, Any]) -> None:
        # Check the credentials declared in provider/{{plugin_name}}.yaml here.
        try:
            return None
        except Exception as e:
            raise ToolProviderCredentialValidationError(str(e)) from e
