"""One error type for the API and the handlers that turn every failure into API.md's JSON error body."""

from __future__ import annotations

import logging

from pydantic import BaseModel, Field
from quart import Quart, Response, jsonify, request
from quart_auth import Unauthorized
from quart_schema import RequestSchemaValidationError
from tortoise.exceptions import DBConnectionError, OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ErrorOut(BaseModel):
    error: str
    message: str


class FieldError(BaseModel):
    field: str
    message: str


class ValidationErrorOut(ErrorOut):
    """A 400: `validation_error` lists the fields and what is wrong with each; a body that is not JSON
    (`invalid_json`) has no fields."""

    fields: list[FieldError] = Field(default_factory=list)


class APIError(Exception):
    def __init__(self, status: int, error: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int, error: str, message: str, headers: dict[str, str] | None = None, **extra: object
) -> Response:
    response = jsonify({"error": error, "message": message, **extra})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def validation_fields(exc: Exception) -> list[dict]:
    """The pydantic errors as {"field", "message"} pairs, never the submitted values (passwords included)."""
    fields = []
    errors = exc.errors(include_input=False, include_url=False) if hasattr(exc, "errors") else []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        if error.get("type") == "model_type" and not loc:
            return [{"field": "", "message": "The body must be a JSON object."}]
        message = error.get("msg", "Invalid value.").removeprefix("Value error, ")
        fields.append({"field": ".".join(loc), "message": message})
    return fields or [{"field": "", "message": "Invalid input."}]


HTTP_ERROR_CODES = {
    400: ("bad_request", "The request could not be understood."),
    401: ("unauthorized", "Sign in first."),
    403: ("forbidden", "You may not do this."),
    404: ("not_found", "There is nothing at this address."),
    405: ("method_not_allowed", "This method is not allowed here."),
    413: ("payload_too_large", "The request body is larger than this server accepts."),
    415: ("invalid_json", "The body must be JSON (Content-Type: application/json)."),
    429: ("too_many_requests", "Too many requests: slow down."),
}

# SQLite answers these while another writer holds the database, or when the disk is full:
# the request did not happen, and retrying later will work.
TRANSIENT_DB_ERRORS = ("database is locked", "database table is locked", "disk is full", "disk i/o error")


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(APIError)
    async def api_error(exc: APIError) -> Response:
        return error_response(exc.status, exc.error, exc.message, exc.headers)

    @app.errorhandler(RequestSchemaValidationError)
    async def schema_error(exc: RequestSchemaValidationError) -> Response:
        fields = validation_fields(exc.validation_error)
        return error_response(400, "validation_error", "Some fields are invalid.", fields=fields)

    @app.errorhandler(Unauthorized)
    async def unauthorized(_exc: Unauthorized) -> Response:
        return error_response(401, "unauthorized", "Sign in first.")

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        error, message = HTTP_ERROR_CODES.get(status, ("http_error", exc.name or "HTTP error."))
        response = error_response(status, error, message)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        if status == 413 and request.http_version.startswith("1"):
            # The rest of the body may still be arriving: the server will close this connection, so say so,
            # or the client reuses it for its next request and sees that one fail.
            response.headers["Connection"] = "close"
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(DBConnectionError)
    async def database_error(exc: Exception) -> Response:
        text = str(exc).lower()
        if isinstance(exc, DBConnectionError) or any(marker in text for marker in TRANSIENT_DB_ERRORS):
            log.warning("database unavailable: %s", exc)
            return error_response(503, "unavailable", "The database is busy; try again shortly.", {"Retry-After": "1"})
        return internal_error(exc)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        return internal_error(exc)


def internal_error(exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "Something went wrong on our side.")
