from collections.abc import Mapping

from werkzeug import Request, Response

from dify_plugin import Endpoint


class RedirectEndpoint(Endpoint):
    """A redirect, which a proxy in between must pass on rather than follow."""

    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        return Response("", status=302, headers={"Location": "https://example.invalid/moved"})
