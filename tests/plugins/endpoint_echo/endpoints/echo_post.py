import json
from collections.abc import Mapping

from werkzeug import Request, Response

from dify_plugin import Endpoint
from endpoints.echo_get import describe


class EchoPostEndpoint(Endpoint):
    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        return Response(
            json.dumps(describe(r, values, settings)),
            status=201,
            content_type="application/json",
            headers={"X-Echo-Reply": "post"},
        )
