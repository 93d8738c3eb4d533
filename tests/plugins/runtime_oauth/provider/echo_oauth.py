from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from werkzeug import Request

from dify_plugin import ToolProvider
from dify_plugin.entities.oauth import ToolOAuthCredentials


class EchoOAuthProvider(ToolProvider):
    """OAuth steps whose results are built from their inputs, so a caller can see what arrived."""

    def _validate_credentials(self, credentials: dict[str, Any]) -> None:
        pass

    def _oauth_get_authorization_url(self, redirect_uri: str, system_credentials: Mapping[str, Any]) -> str:
        query = urlencode({"client_id": system_credentials.get("client_id", ""), "redirect_uri": redirect_uri})
        return f"https://auth.example.com/authorize?{query}"

    def _oauth_get_credentials(
        self, redirect_uri: str, system_credentials: Mapping[str, Any], request: Request
    ) -> ToolOAuthCredentials:
        code = request.args.get("code", "")
        token = f"token-{code}-{system_credentials.get('client_id', '')}"
        return ToolOAuthCredentials(credentials={"access_token": token, "method": request.method}, expires_at=1000)

    def _oauth_refresh_credentials(
        self, redirect_uri: str, system_credentials: Mapping[str, Any], credentials: Mapping[str, Any]
    ) -> ToolOAuthCredentials:
        return ToolOAuthCredentials(credentials={"access_token": f"{credentials.get('access_token', '')}+1"}, expires_at=2000)
