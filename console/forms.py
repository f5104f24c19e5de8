"""Small helpers the page modules share: reading form and query values, flash
messages, redirects after a POST, pagination."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse

from switch.admin.errors import InvalidInput


def field(form: FormData, name: str, *, required: bool = True, max_len: int = 500) -> str:
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if required and not text:
        raise InvalidInput(f"{name} is required")
    if len(text) > max_len:
        raise InvalidInput(f"{name} is longer than {max_len} characters")
    return text


def int_field(form: FormData, name: str) -> int:
    text = field(form, name)
    if not text.lstrip("-").isdigit() or len(text) > 12:
        raise InvalidInput(f"{name} must be a whole number")
    return int(text)


def flash(request: Request, message: str) -> None:
    request.session.setdefault("flash", []).append(message[:300])


def pop_flash(request: Request) -> list[str]:
    messages: list[str] = request.session.pop("flash", [])
    return messages


def back(url: str) -> RedirectResponse:
    """After a POST: see the result with a GET (303)."""
    return RedirectResponse(url, status_code=303)


@dataclass(frozen=True)
class Page:
    number: int
    size: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


def page_of(request: Request) -> Page:
    raw = request.query_params.get("page", "1")
    number = int(raw) if raw.isdigit() and 0 < len(raw) < 7 else 1
    return Page(max(1, number), request.app.state.settings.page_size)
