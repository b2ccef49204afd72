"""Quart plumbing: the JSON provider (orjson), a request class whose JSON errors are API errors, JSON
responses that skip quart-schema's per-response conversion, and quart-schema's validation through cached
pydantic adapters."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import orjson
import quart_schema.validation
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python
from quart import Quart, Request, Response
from quart.json.provider import DefaultJSONProvider
from quart.sessions import NullSession, SecureCookieSessionInterface
from quart_schema.conversion import model_load

from .errors import APIError

# as the stdlib's json writes them (the OpenAPI document keys responses by status code), one line per body
_RESPONSE_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE


class OrjsonProvider(DefaultJSONProvider):
    """orjson: several times faster than the standard library, and strict about invalid UTF-8 and surrogates."""

    def dumps(self, obj: Any, **_kwargs: Any) -> str:
        # non-str keys as the stdlib writes them (the OpenAPI document keys responses by status code)
        return orjson.dumps(obj, default=_jsonable, option=orjson.OPT_NON_STR_KEYS).decode()

    def loads(self, s: str | bytes, **_kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """The body encoded once, straight to bytes (the base class makes a str of orjson's bytes, then the
        response encodes that str again)."""
        return self._app.response_class(encode(self._prepare_response_obj(args, kwargs)), mimetype=self.mimetype)


def encode(obj: Any) -> bytes:
    """A JSON answer's body, as every route's is encoded (a body kept ready: page_cache.py)."""
    return orjson.dumps(obj, default=_jsonable, option=_RESPONSE_OPTIONS)


def _jsonable(value: Any) -> Any:
    """What orjson cannot encode by itself: pydantic models and the like (quart-schema's OpenAPI document)."""
    return to_jsonable_python(value)


class ChatQuart(Quart):
    """Quart, less the work chat does not need on every request.

    - `ensure_async` (called for every hook, view and decorator wrapper of every request) answers a coroutine
      function from its code flags, where Quart's `inspect.iscoroutinefunction` unwraps and inspects it anew.
    - No Flask-style `session`: chat keeps none (its sessions are quart-auth's cookie and the database), so the
      signed `session` cookie is neither looked for nor written; `quart.session` is a NullSession, which refuses
      to be written to.
    """

    def ensure_async(self, func: Any) -> Any:
        code = getattr(func, "__code__", None)
        if code is not None and code.co_flags & inspect.CO_COROUTINE:
            return func
        return super().ensure_async(func)


class _NoSessions(SecureCookieSessionInterface):
    async def open_session(self, app: Quart, request: Any) -> None:
        return None  # Quart then makes the NullSession, and saves nothing after the response

    async def make_null_session(self, app: Quart) -> NullSession:
        return _NULL_SESSION  # one for all: it refuses every write, and each open websocket would keep its own


_NULL_SESSION = NullSession()


ChatQuart.session_interface = _NoSessions()


class ChatRequest(Request):
    _blueprints: tuple[object, list[str]] | None = None  # (the url_rule they were read from, the names)

    @property
    def blueprints(self) -> list[str]:
        """Quart's, worked out once per request: Quart asks for them in each of its hooks' passes (before,
        after, teardown), and each time split the endpoint's name anew."""
        if self._blueprints is None or self._blueprints[0] is not self.url_rule:
            self._blueprints = (self.url_rule, Request.blueprints.fget(self))
        return self._blueprints[1]

    async def get_data(self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False) -> str | bytes:
        """Quart's, without its `asyncio.wait_for` (a task per request) when the body is already whole, as nearly
        every JSON body is by the time the view reads it (asgi_http.py)."""
        body = self.body
        if parse_form_data or not body._complete.is_set():
            return await super().get_data(cache, as_text, parse_form_data)
        raw = await body  # whole: no wait, and the 413 of an oversized body is raised as Quart raises it
        if not cache:
            body.clear()
        return raw.decode() if as_text else raw

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
    """Turn a view's dict or list into a JSON response before quart-schema's conversion sees it, and let a response
    with nothing for that conversion to do skip it.

    quart-schema runs every return value through a new pydantic TypeAdapter (built per response, a large share
    of a small request's time); ours are plain JSON already, so orjson encodes them directly. What is then a
    response, alone or with a status, goes straight to Quart's make_response: quart-schema's conversion would
    hand it back unchanged after looking up its settings (six context-local look-ups per request). Headers
    returned beside a value still go through it (it writes their names in kebab-case). Call this after
    QuartSchema(app), whose make_response it wraps.
    """
    schema_make_response = app.make_response
    quart_make_response = schema_make_response.__wrapped__  # what quart-schema's wrapper calls after converting

    async def make_response(result: Any) -> Response:
        value, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if isinstance(value, dict | list):
            value = app.json.response(value)
            result = (value, *rest) if rest else value
        if isinstance(value, Response) and all(type(part) is int for part in rest):
            return await quart_make_response(result)
        return await schema_make_response(result)

    app.make_response = make_response  # type: ignore[method-assign]


@functools.cache
def _adapter(model_class: type) -> TypeAdapter:
    return TypeAdapter(model_class)


def _cached_model_load(
    data: Any, model_class: type, exception_class: type[Exception], *, decamelize: bool = False, preference=None
) -> Any:
    """quart-schema's model_load, with one TypeAdapter per model for the life of the process (quart-schema builds
    a new one for every request it validates)."""
    if decamelize or not (isinstance(model_class, type) and issubclass(model_class, BaseModel)):
        return model_load(data, model_class, exception_class, decamelize=decamelize, preference=preference)
    try:
        return _adapter(model_class).validate_python(data)
    except (TypeError, ValidationError, ValueError) as error:  # as quart-schema's own: its 400s stay the same
        raise exception_class(error) from None


def cache_validation_adapters() -> None:
    """validate_request / validate_querystring (quart_schema.validation) load through _cached_model_load."""
    quart_schema.validation.model_load = _cached_model_load
