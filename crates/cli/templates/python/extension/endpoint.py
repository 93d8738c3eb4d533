import json
from collections.abc import Mapping

from werkzeug import Request, Response

from dify_plugin import Endpoint


class {{class_prefix}}Endpoint(Endpoint):
    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        # `values` holds path parameters, `settings` the values of group/{{plugin_name}}.yaml.
        body = {"plugin": "{{plugin_name}}", "path": r.path, "query": dict(r.args)}
        return Response(json.dumps(body), status=200, content_type="application/json")
