from collections.abc import Mapping
from typing import Any

from werkzeug import Request

from dify_plugin.entities.trigger import Variables
from dify_plugin.errors.trigger import EventIgnoreError
from dify_plugin.interfaces.trigger import Event


class EchoEvent(Event):
    """Fires with the webhook's JSON body and path; ignored when `keyword` is set and not in the body."""

    def _on_event(self, request: Request, parameters: Mapping[str, Any], payload: Mapping[str, Any]) -> Variables:
        body = request.get_json(silent=True) or {}
        keyword = parameters.get("keyword")
        if keyword and keyword not in str(body):
            raise EventIgnoreError()
        return Variables(variables={"payload": body, "path": request.path})
