from collections.abc import Mapping

from werkzeug import Request, Response

from dify_plugin import Endpoint

PIECE = 256 * 1024


# Byte i of the whole body is i % 251, so any cut or reordering shows.
CYCLE = bytes(range(251)) * (PIECE // 251 + 2)


def pattern(start: int, length: int) -> bytes:
    offset = start % 251
    return CYCLE[offset : offset + length]


class StreamEndpoint(Endpoint):
    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        size = values["size"]

        def generate():
            sent = 0
            while sent < size:
                length = min(PIECE, size - sent)
                yield pattern(sent, length)
                sent += length

        return Response(generate(), status=200, content_type="application/octet-stream", headers={"X-Stream-Size": str(size)})
