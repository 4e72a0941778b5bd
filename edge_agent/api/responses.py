"""The API's JSON responses: rendered by orjson, and a recorded write's 201 (with
``Idempotent-Replayed: true`` when a retry got the original result)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse

from edge_agent.retail import WriteResult


class FastJSONResponse(JSONResponse):
    """orjson instead of json.dumps: the hot path answers every sale with one of these."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def written(result: WriteResult) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return FastJSONResponse(result.body, status_code=201, headers=headers)
