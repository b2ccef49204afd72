"""/openapi.json as quart-schema builds it, with what a client (and a schema-driven fuzzer) needs to get it right.

quart-schema leaves out five things that this API has: that bodies and some query parameters are required, that a 204
has no body, the Retry-After header of 429 and 503 answers, and how operations connect (OpenAPI links:
the account that /register creates is the one /login signs in and /send-message writes to). It also
cannot say that two query parameters exclude each other, so those are described as one object
parameter, which has the same form on the wire (`?before=ID` or `?after=ID`; `?user_id=N` or `?room=NAME`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from quart_schema import OpenAPIProvider, document_response, security_scheme

from .errors import ErrorOut, ValidationErrorOut
from .security import SESSION_COOKIE

# the security scheme of every operation that needs a session (blueprints: @documented(..., session=True))
SESSION = [{"session": []}]
# the cookie that POST /login sets; /logout revokes it, /change-password every other one of the account
SECURITY_SCHEMES = {"session": {"type": "apiKey", "in_": "cookie", "name": SESSION_COOKIE}}

T = TypeVar("T")


def documented(
    *answers: tuple[type[BaseModel], int], errors: tuple[int, ...] = (), session: bool = False
) -> Callable[[T], T]:
    """A route's documentation in one line: its answers (model, status), its error statuses (a 400 is a
    validation error's body, any other an ErrorOut) and, with `session`, that it needs the session cookie."""

    def decorator(func: T) -> T:
        # applied in the order a stack of @document_response applied them, the lowest first: /openapi.json lists
        # the statuses in that order
        for status in reversed(errors):
            func = document_response(ValidationErrorOut if status == 400 else ErrorOut, status)(func)
        for model, status in reversed(answers):
            func = document_response(model, status)(func)
        return security_scheme(SESSION)(func) if session else func

    return decorator


RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}

# get-messages names its room with one object parameter ("conversation"), which a link fills member by member (a
# generated user_id may land beside it: the room then wins); its page ("cursor", at most one of before and after)
# is left to the client, since a linked member beside a generated one would be two
_ROOM = {"query.room": "$response.body#/room"}
_READ = {"room": "$response.body#/room", "up_to": "$response.body#/id"}
_SENT_LINKS = {
    "Conversation": {"operationId": "get_get_messages", "parameters": _ROOM},
    "MarkRead": {"operationId": "post_mark_read", "requestBody": _READ},
}
# (operationId, status) -> the operations that the answer's data feeds
LINKS: dict[tuple[str, str], dict[str, Any]] = {
    ("post_register", "201"): {
        "SignIn": {
            "operationId": "post_login",
            "description": "Sign in to the account just created.",
            "requestBody": {"email": "$request.body#/email", "password": "$request.body#/password"},
        },
        "MessageTheNewUser": {
            "operationId": "post_send_message",
            "requestBody": {"receiver_id": "$response.body#/id", "content": "hello"},
        },
    },
    ("post_send_message", "201"): _SENT_LINKS,
    ("post_send_message", "200"): _SENT_LINKS,
}


# operations whose 200 is text, not JSON: (media type, its schema)
TEXT_ANSWERS = {"get_metrics": "text/plain; version=0.0.4"}

# Blueprints that serve HTML to browsers, not the JSON API that /openapi.json describes (API.md, "Operations").
HTML_BLUEPRINTS = ("pages",)


class ChatOpenAPIProvider(OpenAPIProvider):
    def generate_rules(self):
        for rule in super().generate_rules():
            if rule.endpoint.split(".", 1)[0] not in HTML_BLUEPRINTS:
                yield rule

    def build_paths(self, rule) -> tuple[dict, dict]:
        paths, components = super().build_paths(rule)
        for methods in paths.values():
            for method, operation in methods.items():
                # quart-schema shares one responses dict between the methods of a rule: give each its own
                operation = methods[method] = {**operation, "responses": _finish_responses(operation)}
                if media_type := TEXT_ANSWERS.get(operation.get("operationId", "")):
                    answer = operation["responses"]["200"]
                    answer["content"] = {media_type: {"schema": {"type": "string"}}}
                for status, response in operation["responses"].items():
                    if links := LINKS.get((operation.get("operationId", ""), str(status))):
                        response["links"] = links
        return paths, components

    def build_request_body(self, model, source) -> tuple[dict[str, Any], dict[str, Any]]:
        request_body, definitions = super().build_request_body(model, source)
        return {**request_body, "required": True}, definitions  # OpenAPI's default is "optional"

    def build_querystring_parameters(self, model) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        parameters, definitions = super().build_querystring_parameters(model)
        for parameter in parameters:
            field = model.model_fields.get(parameter["name"])
            if field is not None and field.is_required():
                parameter["required"] = True  # pydantic lists required fields on the model, not the property
        for name, members, required in getattr(model, "exclusive_parameters", ()):
            grouped = [p for p in parameters if p["name"] in members]
            properties = {p["name"]: _without_null(p["schema"]) for p in grouped}
            parameters = [p for p in parameters if p["name"] not in members]
            parameters.append(
                {
                    "name": name,
                    "in": "query",
                    "style": "form",
                    "explode": True,  # each member is its own query parameter: ?before=ID or ?after=ID
                    "description": f"{'Exactly' if required else 'At most'} one of {', '.join(members)}.",
                    "required": required,
                    "schema": {
                        "type": "object",
                        "properties": properties,
                        "additionalProperties": False,
                        "minProperties": int(required),
                        "maxProperties": 1,
                    },
                }
            )
        return parameters, definitions


def _finish_responses(operation: dict) -> dict:
    responses = {}
    for status, response in operation["responses"].items():  # statuses are ints here, strings in the JSON
        status, response = str(status), dict(response)
        if status == "204":
            response.pop("content", None)  # no body, so no media type either
        if status in ("429", "503"):
            response["headers"] = RETRY_AFTER
        responses[status] = response
    return responses


def _without_null(schema: dict) -> dict:
    """`int | None = None` is "absent" on the wire: a query string has no null."""
    options = [option for option in schema.get("anyOf", []) if option.get("type") != "null"]
    if len(options) != 1:
        return schema
    rest = {key: value for key, value in schema.items() if key not in ("anyOf", "default")}
    return {**rest, **options[0]}
