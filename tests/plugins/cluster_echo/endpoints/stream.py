from collections.abc import Mapping

from werkzeug import Request, Response

from dify_plugin import Endpoint


class StreamEndpoint(Endpoint):
    """`pieces` lines of 64 KiB each (`<index>:` then filler), streamed without a length."""

    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        count = values["pieces"]

        def generate():
            for index in range(count):
                head = f"{index}:".encode()
                yield head + b"x" * (65535 - len(head)) + b"\n"

        return Response(generate(), status=200, content_type="text/plain")
