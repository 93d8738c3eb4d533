from collections.abc import Mapping

from werkzeug import Request, Response

from dify_plugin import Endpoint


class BrokenStreamEndpoint(Endpoint):
    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        def generate():
            yield b"partial body;"
            raise RuntimeError("stream broke on purpose")

        return Response(generate(), status=200, content_type="text/plain")
