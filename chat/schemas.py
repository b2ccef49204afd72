"""Input and output shapes of the JSON API, shared by the HTTP blueprints and the websocket.

Inputs are strict (no "5" for 5, no true for 1) and refuse NUL and lone surrogates, which no database
column should hold; outputs describe what the handlers return, for /openapi.json.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_ID = 2**31 - 1  # ids are 32-bit in both databases: larger values are simply not found
USERNAME_RE = re.compile(r"[A-Za-z0-9._-]{3,80}")  # used with fullmatch: "$" would allow a final newline
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_CONTENT = 4000
MAX_EMAIL = 120


def clean_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def valid_email(value: str) -> str:
    if not EMAIL_RE.fullmatch(value):
        raise ValueError("must be a valid email address")
    value = value.lower()
    if len(value) > MAX_EMAIL:  # lower-casing can lengthen a string ("İ" becomes two code points)
        raise ValueError(f"must be at most {MAX_EMAIL} characters")
    return value


def valid_username(value: str) -> str:
    if not USERNAME_RE.fullmatch(value):
        raise ValueError("must be 3 to 80 letters, digits, '.', '_' or '-'")
    return value


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only spaces")
    return value


def text(min_length: int | None = None, max_length: int | None = None) -> object:
    """A strict string with length limits checked first (their messages read "at least 8 characters"), then
    refused if it holds NUL or lone surrogates."""
    return Annotated[
        str,
        Field(strict=True),
        StringConstraints(min_length=min_length, max_length=max_length),
        AfterValidator(clean_text),
    ]


Text = text()
Id = Annotated[int, Field(strict=True, ge=1, le=MAX_ID)]
Cursor = Annotated[int, Field(strict=True, ge=0, le=MAX_ID)]
Username = Annotated[Text, AfterValidator(valid_username)]
Email = Annotated[text(max_length=MAX_EMAIL), AfterValidator(valid_email)]
Password = text(min_length=8, max_length=128)
Content = Annotated[text(min_length=1, max_length=MAX_CONTENT), AfterValidator(not_blank)]
ClientId = text(min_length=1, max_length=64)


class Input(BaseModel):
    model_config = ConfigDict(extra="ignore")


# ---------------------------------------------------------------- auth


class RegisterIn(Input):
    username: Username
    email: Email
    password: Password


class LoginIn(Input):
    email: text(max_length=MAX_EMAIL) | None = None
    username: text(max_length=80) | None = None
    # no minimum here: a login says only "invalid credentials", never which rule a password breaks
    password: text(max_length=128)

    @model_validator(mode="after")
    def _one_identifier(self) -> LoginIn:
        if self.email is None and self.username is None:
            raise ValueError("give an email or a username")
        return self


class ChangePasswordIn(Input):
    current_password: text(max_length=128)
    new_password: Password


class UserOut(BaseModel):
    id: int
    username: str
    email: str


# ---------------------------------------------------------------- users


class UserListItem(BaseModel):
    id: int
    username: str
    online: bool
    unread: int


class UsersOut(BaseModel):
    users: list[UserListItem]


# ---------------------------------------------------------------- messages


class SendMessageIn(Input):
    receiver_id: Id
    content: Content
    client_id: ClientId | None = None


class MessagesQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user_id: int = Field(ge=1, le=MAX_ID)
    before: int | None = Field(None, ge=0, le=MAX_ID)
    after: int | None = Field(None, ge=0, le=MAX_ID)
    limit: int = Field(50, ge=1, le=200)

    @model_validator(mode="after")
    def _one_cursor(self) -> MessagesQuery:
        if self.before is not None and self.after is not None:
            raise ValueError("use before or after, not both")
        return self


class MarkReadIn(Input):
    user_id: Id
    up_to: Cursor


class MessageOut(BaseModel):
    id: int
    sender_id: int
    receiver_id: int
    room: str
    content: str
    timestamp: str
    client_id: str | None


class MessagesOut(BaseModel):
    messages: list[MessageOut]
    has_more: bool


class HealthOut(BaseModel):
    status: str
    broker: str


class NoContent(BaseModel):
    """No content: the response has an empty body."""
