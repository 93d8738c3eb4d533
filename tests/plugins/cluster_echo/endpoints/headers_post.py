from collections.abc import Mapping

from werkzeug import Request, Response

from dify_plugin import Endpoint
from endpoints.headers_get import received


class HeadersPostEndpoint(Endpoint):
    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        return received(r)
