from collections.abc import Mapping

from werkzeug import Request, Response

from dify_plugin import Endpoint


class FailEndpoint(Endpoint):
    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        raise RuntimeError("endpoint exploded on purpose")
