"""Input and output shapes of the JSON API, shared by the HTTP blueprints and the websocket.

Inputs are strict (no "5" for 5, no true for 1) and refuse NUL and lone surrogates, which no database
column should hold; outputs describe what the handlers return, for /openapi.json.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal, get_type_hints

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from .models import FileJSON, MessageJSON

MAX_ID = 2**31 - 1  # ids are 32-bit in both databases: larger values are simply not found
USERNAME_RE = re.compile(r"[A-Za-z0-9._-]{3,80}")  # used with fullmatch: "$" would allow a final newline
# Python's whitespace (str.isspace, which str.strip uses), spelled out: the same class then means the same
# in /openapi.json's patterns, where "\s" is JavaScript's and leaves out \x1c-\x1f and \x85.
SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
EMAIL_RE = re.compile(rf"[^@{SPACE}]+@[^@{SPACE}]+\.[^@{SPACE}]+")
NO_NUL = r"^[^\x00]*$"
MAX_CONTENT = 4000
MAX_EMAIL = 120


def integral(value: object) -> object:
    """2.0 is the integer 2 in JSON (and in JSON Schema's "integer"): accept it as one. Strings, booleans
    and 2.5 stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


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


def exactly_one(model: BaseModel, first: str, second: str) -> None:
    """Refuse a model with both or neither of two fields, naming the first as the field at fault."""
    if (getattr(model, first) is None) == (getattr(model, second) is None):
        error = PydanticCustomError("exactly_one", f"give exactly one of {first} and {second}")
        details = InitErrorDetails(type=error, loc=(first,), input=getattr(model, first))
        raise ValidationError.from_exception_data(type(model).__name__, [details])


def one_of(first: str, first_type: str, second: str, second_type: str) -> dict:
    """The JSON Schema of `exactly_one`: one of the two fields, not null."""
    return {
        "oneOf": [
            {"required": [first], "properties": {first: {"type": first_type}}},
            {"required": [second], "properties": {second: {"type": second_type}}},
        ]
    }


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only spaces")
    return value


def documented(pattern: str) -> Field:
    """The rule a validator enforces, as the JSON Schema `pattern` that /openapi.json shows clients.

    Only documentation: the validators decide. Patterns are anchored, so that a fuzzer that generates
    from the schema (tests/system/test_fuzz_api.py) produces exactly what the server accepts.
    """
    return Field(json_schema_extra={"pattern": pattern})


def text(min_length: int | None = None, max_length: int | None = None, pattern: str = NO_NUL) -> object:
    """A strict string with length limits checked first (their messages read "at least 8 characters"), then
    refused if it holds NUL or lone surrogates; `pattern` says what the validators accept, for /openapi.json."""
    return Annotated[
        str,
        Field(strict=True),
        StringConstraints(min_length=min_length, max_length=max_length),
        AfterValidator(clean_text),
        documented(pattern),
    ]


Text = text()
Id = Annotated[int, Field(strict=True, ge=1, le=MAX_ID), BeforeValidator(integral)]
Cursor = Annotated[int, Field(strict=True, ge=0, le=MAX_ID), BeforeValidator(integral)]
Username = Annotated[text(pattern=r"^[A-Za-z0-9._-]{3,80}$"), AfterValidator(valid_username)]
Email = Annotated[
    text(max_length=MAX_EMAIL, pattern=rf"^[^@{SPACE}\x00]+@[^@{SPACE}\x00]+\.[^@{SPACE}\x00]+$"),
    AfterValidator(valid_email),
]
Password = text(min_length=8, max_length=128)
# something besides spaces
Content = Annotated[
    text(min_length=1, max_length=MAX_CONTENT, pattern=rf"^[^\x00]*[^{SPACE}\x00][^\x00]*$"),
    AfterValidator(not_blank),
]
ClientId = text(min_length=1, max_length=64)
# a message's content where files may be attached: empty then (blank otherwise refused, with_files_or_content)
MessageContent = text(max_length=MAX_CONTENT, pattern=rf"^[^\x00]*[^{SPACE}\x00][^\x00]*$")
MAX_FILES = 10  # files attached to one message
FileIds = Annotated[list[Id], Field(max_length=MAX_FILES)]


def with_files_or_content(content: str, info: ValidationInfo) -> str:
    """Content may be empty (or blank) only when files are attached: the message is then its files."""
    file_ids = info.data.get("file_ids") or []
    if len(set(file_ids)) != len(file_ids):
        raise ValueError("file_ids must not repeat a file")
    if not file_ids:
        if not content:  # as Content says it (min_length=1), for clients that read the message
            raise PydanticCustomError("string_too_short", "String should have at least 1 character", {"min_length": 1})
        not_blank(content)
    return content


class Input(BaseModel):
    model_config = ConfigDict(extra="ignore")


# ---------------------------------------------------------------- auth


class RegisterIn(Input):
    username: Username
    email: Email
    password: Password


class LoginIn(Input):
    # an email or a username (or both: the email is used)
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["email"], "properties": {"email": {"type": "string"}}},
                {"required": ["username"], "properties": {"username": {"type": "string"}}},
            ]
        }
    )

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


class AccountOut(UserOut):
    """The account as its owner (GET /me) and the admins see it."""

    role: Literal["admin", "member"]
    deactivated: bool


class AdminAccountOut(AccountOut):
    created_at: str
    deleted: bool


class AdminAccountsOut(BaseModel):
    users: list[AdminAccountOut]


class DeleteAccountIn(Input):
    password: text(max_length=128)


class RoleIn(Input):
    role: Literal["admin", "member"]


# ---------------------------------------------------------------- users


class UserListItem(BaseModel):
    id: int
    username: str
    online: bool
    unread: int
    mentions: int  # unread messages that mention the caller
    role: Literal["admin", "member"]
    deactivated: bool
    deleted: bool  # the account was deleted: its username is "deleted user", its messages stay


class UsersOut(BaseModel):
    users: list[UserListItem]


# ---------------------------------------------------------------- messages


RoomName = text(max_length=100, pattern=r"^(dm-[1-9][0-9]{0,9}-[1-9][0-9]{0,9}|ch-[1-9][0-9]{0,9})$")


class SendMessageIn(Input):
    # exactly one of receiver_id (a direct message) and room (a channel, or a direct room by name)
    model_config = ConfigDict(json_schema_extra=one_of("receiver_id", "integer", "room", "string"))

    receiver_id: Id | None = None
    room: RoomName | None = None
    file_ids: FileIds = Field(default_factory=list)  # uploaded by the sender into this room, not yet sent
    content: MessageContent  # may be "" when file_ids attaches files
    client_id: ClientId | None = None
    reply_to: Id | None = None  # a message of the same room (else 400)

    _content = field_validator("content")(with_files_or_content)

    @model_validator(mode="after")
    def _one_destination(self) -> SendMessageIn:
        exactly_one(self, "receiver_id", "room")
        return self


# A room's name as clients send it (Socket.IO events): rooms.admit decides whether it names a room of theirs.
RoomName = text(min_length=1, max_length=64)


class JoinIn(Input):
    """Socket.IO's `join` and `leave` events."""

    room: RoomName


class RoomMessageIn(Input):
    """Socket.IO's `message` event: SendMessageIn's rules, addressed to a room."""

    room: RoomName
    file_ids: FileIds = Field(default_factory=list)
    content: MessageContent
    client_id: ClientId | None = None

    _content = field_validator("content")(with_files_or_content)


class MessagesQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    # /openapi.json describes each pair as one parameter: "room" holds exactly one of user_id and room (the
    # parameter), "cursor" at most one of before and after
    exclusive_parameters: ClassVar[tuple[tuple[str, tuple[str, ...], bool], ...]] = (
        ("conversation", ("user_id", "room"), True),
        ("cursor", ("before", "after"), False),
    )

    user_id: int | None = Field(None, ge=1, le=MAX_ID)
    room: str | None = Field(None, max_length=100)
    before: int | None = Field(None, ge=0, le=MAX_ID)
    after: int | None = Field(None, ge=0, le=MAX_ID)
    limit: int = Field(50, ge=1, le=200)

    @model_validator(mode="after")
    def _one_cursor(self) -> MessagesQuery:
        if self.before is not None and self.after is not None:
            raise ValueError("use before or after, not both")
        if self.room is None:
            exactly_one(self, "user_id", "room")  # neither
        # both: the room (what a link from a sent message fills in) names it; the documentation says one of them
        return self


class MarkReadIn(Input):
    model_config = ConfigDict(json_schema_extra=one_of("user_id", "integer", "room", "string"))

    user_id: Id | None = None
    room: RoomName | None = None
    up_to: Cursor

    @model_validator(mode="after")
    def _one_room(self) -> MarkReadIn:
        exactly_one(self, "user_id", "room")
        return self


# the documentation of models.MessageJSON, field for field
MessageOut = create_model("MessageOut", **{name: (hint, ...) for name, hint in get_type_hints(MessageJSON).items()})


# the documentation of models.FileJSON (its optional fields as such)
FileOut = create_model(
    "FileOut",
    **{
        name: (hint, ...) if name in ("id", "name", "content_type", "size", "url") else (hint | None, None)
        for name, hint in get_type_hints(FileJSON).items()
    },
)


class UploadQuery(BaseModel):
    """POST /files?room=ROOM: the room whose members may read the file."""

    model_config = ConfigDict(extra="ignore")
    room: str = Field(min_length=1, max_length=100)


class EditMessageIn(Input):
    content: Content


class MessagesOut(BaseModel):
    messages: list[MessageOut]
    has_more: bool


# ---------------------------------------------------------------- rooms

ChannelName = text(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9._-]{1,80}$")
Topic = text(max_length=250)
Role = Literal["member", "owner"]


def valid_channel_name(value: str) -> str:
    if not CHANNEL_NAME_RE.fullmatch(value):
        raise ValueError("must be 1 to 80 letters, digits, '.', '_' or '-'")
    return value


CHANNEL_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,80}")
ValidChannelName = Annotated[ChannelName, AfterValidator(valid_channel_name)]


class CreateRoomIn(Input):
    name: ValidChannelName
    topic: Topic = ""
    private: Annotated[bool, Field(strict=True)] = False
    member_ids: Annotated[list[Id], Field(max_length=1000)] = []


class UpdateRoomIn(Input):
    name: ValidChannelName | None = None
    topic: Topic | None = None


class RoomMembersIn(Input):
    user_ids: Annotated[list[Id], Field(min_length=1, max_length=1000)]
    role: Role = "member"


class RoomsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    scope: Literal["joined", "public"] = "joined"


class ChannelOut(BaseModel):
    room: str
    id: int
    name: str
    topic: str
    private: bool
    archived: bool
    created_by: int | None
    member_count: int
    role: Role | None
    unread: int
    mentions: int  # unread messages that mention the caller
    last_message_id: int


class RoomsOut(BaseModel):
    rooms: list[ChannelOut]


class RoomMember(BaseModel):
    id: int
    username: str
    role: Role
    online: bool


class ChannelWithMembersOut(ChannelOut):
    members: list[RoomMember]


# ---------------------------------------------------------------- search


def has_word(value: str) -> str:
    if not WORD_CHARACTER.search(value):
        raise ValueError("must contain at least one word (letters or digits)")
    return value


WORD_CHARACTER = re.compile(r"[^\W_]")  # what chat/search.py takes for a word's letter
SearchText = Annotated[
    text(min_length=1, max_length=200, pattern=r"^[^\x00]*[^\W_][^\x00]*$"), AfterValidator(has_word)
]


class SearchQuery(BaseModel):
    """q's words and "phrases" are read by chat/search.py (parse_query)."""

    model_config = ConfigDict(extra="ignore")

    q: SearchText
    room: str | None = Field(None, min_length=1, max_length=100)
    before: int | None = Field(None, ge=0, le=MAX_ID)
    limit: int = Field(20, ge=1, le=50)


# a message as message_json builds it, and where the query matched: [start, end] offsets into content
SearchResultOut = create_model("SearchResultOut", __base__=MessageOut, matches=(list[tuple[int, int]], ...))


class SearchOut(BaseModel):
    messages: list[SearchResultOut]
    has_more: bool


class HealthOut(BaseModel):
    status: str
    broker: str


class ExportedAccount(AccountOut):
    created_at: str
    deactivated_at: str | None
    deleted_at: str | None
    password_hash: str | None = None  # whole-instance exports only (chat export)


class ExportedReadMarker(BaseModel):
    user_id: int
    room: str
    up_to: int


class ExportOut(BaseModel):
    """docs/operations.md, "Export format": version 1."""

    format: Literal["chat-export"]
    version: int
    scope: Literal["instance", "user"]
    exported_at: str
    users: list[ExportedAccount]
    messages: list[MessageOut]
    read_markers: list[ExportedReadMarker]


class MetricsText(RootModel[str]):
    """Prometheus text exposition format (text/plain; version=0.0.4), not JSON."""


class NoContent(BaseModel):
    """No content: the response has an empty body."""
