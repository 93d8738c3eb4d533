import json
from collections.abc import Mapping

from werkzeug import Request, Response

from dify_plugin import Endpoint


def received(r: Request) -> Response:
    """Status 203, a header of its own, and every header, the path, query and body it was given."""
    answer = {
        "method": r.method,
        "path": r.path,
        "query": {key: r.args.getlist(key) for key in r.args},
        "headers": [[name, value] for name, value in r.headers.items()],
        "body": r.get_data().decode("utf-8", "replace"),
    }
    return Response(json.dumps(answer), status=203, content_type="application/json", headers={"X-Plugin-Reply": r.method.lower()})


class HeadersGetEndpoint(Endpoint):
    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        return received(r)
