import hashlib
import json
from collections.abc import Mapping

from werkzeug import Request, Response

from dify_plugin import Endpoint


def describe(r: Request, values: Mapping, settings: Mapping) -> dict:
    body = r.get_data()
    return {
        "method": r.method,
        "path": r.path,
        "values": dict(values),
        "query": {key: r.args.getlist(key) for key in r.args},
        "echo_header": r.headers.get("X-Echo"),
        "host": r.headers.get("Host"),
        "hook_id": r.headers.get("Dify-Hook-Id"),
        "hook_url": r.headers.get("Dify-Hook-Url"),
        "forwarded_for": r.headers.get("X-Forwarded-For"),
        "body_length": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body_head": body[:64].decode("utf-8", "replace"),
        "settings": dict(settings),
    }


class EchoGetEndpoint(Endpoint):
    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        return Response(
            json.dumps(describe(r, values, settings)),
            status=200,
            content_type="application/json",
            headers={"X-Echo-Reply": "get"},
        )
