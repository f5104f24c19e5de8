"""The errors of the API, with Toxiproxy's messages and HTTP status codes.

The in-process API raises them; the HTTP API sends ``{"error": message, "status": code}``
with ``code`` as the HTTP status; the client raises them again from that body.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An API failure: ``message`` and the HTTP ``status`` Toxiproxy answers it with."""

    default_status = 500

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status if status is not None else self.default_status

    def to_json(self) -> dict[str, Any]:
        return {"error": self.message, "status": self.status}


class BadRequest(ApiError):
    default_status = 400


class NotFound(ApiError):
    default_status = 404


class AlreadyExists(ApiError):
    default_status = 409


def bad_body(detail: str) -> BadRequest:
    return BadRequest(f"bad request body: {detail}")


def missing_field(detail: str) -> BadRequest:
    return BadRequest(f"missing required field: {detail}")


def proxy_not_found() -> NotFound:
    return NotFound("proxy not found")


def proxy_exists() -> AlreadyExists:
    return AlreadyExists("proxy already exists")


def invalid_stream() -> BadRequest:
    return BadRequest("stream was invalid, can be either upstream or downstream")


def invalid_toxic_type() -> BadRequest:
    return BadRequest("invalid toxic type")


def toxic_exists() -> AlreadyExists:
    return AlreadyExists("toxic already exists")


def toxic_not_found() -> NotFound:
    return NotFound("toxic not found")


def from_json(status: int, body: Any) -> ApiError:
    """The error an HTTP answer ``status`` with ``body`` stands for (the client's side)."""
    message = body.get("error") if isinstance(body, dict) else None
    text = message if isinstance(message, str) else f"HTTP {status}"
    kind = {400: BadRequest, 404: NotFound, 409: AlreadyExists}.get(status, ApiError)
    return kind(text, status)
