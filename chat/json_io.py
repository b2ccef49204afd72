"""Quart plumbing: the JSON provider (orjson), a request class whose JSON errors are API errors, and JSON
responses that skip quart-schema's per-response conversion."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic_core import to_jsonable_python
from quart import Quart, Request, Response
from quart.json.provider import DefaultJSONProvider

from .errors import APIError


class OrjsonProvider(DefaultJSONProvider):
    """orjson: several times faster than the standard library, and strict about invalid UTF-8 and surrogates."""

    def dumps(self, obj: Any, **_kwargs: Any) -> str:
        # non-str keys as the stdlib writes them (the OpenAPI document keys responses by status code)
        return orjson.dumps(obj, default=_jsonable, option=orjson.OPT_NON_STR_KEYS).decode()

    def loads(self, s: str | bytes, **_kwargs: Any) -> Any:
        return orjson.loads(s)


def _jsonable(value: Any) -> Any:
    """What orjson cannot encode by itself: pydantic models and the like (quart-schema's OpenAPI document)."""
    return to_jsonable_python(value)


class ChatRequest(Request):
    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if cache and self._cached_json[silent] is not Ellipsis:
            return self._cached_json[silent]
        if not (force or self.is_json):
            if silent:
                return None
            raise APIError(400, "invalid_json", "The body must be JSON (Content-Type: application/json).")
        raw = await self.get_data(cache=cache, as_text=False)
        try:
            result = self.json_module.loads(raw)  # bytes: invalid UTF-8 is a parse error, not a crash
        except ValueError:
            if not silent:
                raise APIError(400, "invalid_json", "The body is not valid JSON.") from None
            result = None
        if cache:
            self._cached_json[silent] = result
        return result


def json_responses_first(app: Quart) -> None:
    """Turn a view's dict or list into a JSON response before quart-schema's conversion sees it.

    quart-schema runs every return value through a new pydantic TypeAdapter (built per response, a large share
    of a small request's time); ours are plain JSON already, so orjson encodes them directly. Call this after
    QuartSchema(app), whose make_response it wraps.
    """
    schema_make_response = app.make_response

    async def make_response(result: Any) -> Response:
        value, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if isinstance(value, dict | list):
            response = app.json.response(value)
            result = (response, *rest) if rest else response
        return await schema_make_response(result)

    app.make_response = make_response  # type: ignore[method-assign]
