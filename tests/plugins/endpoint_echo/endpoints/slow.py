import time
from collections.abc import Mapping

from werkzeug import Request, Response

from dify_plugin import Endpoint


class SlowEndpoint(Endpoint):
    """`/slow/before` answers only after 30 s; `/slow/during` sends a first piece, then stalls."""

    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        if values["when"] == "before":
            time.sleep(30)
            return Response("late", status=200)

        def generate():
            yield b"started;"
            time.sleep(30)
            yield b"late"

        return Response(generate(), status=202, content_type="text/plain")
