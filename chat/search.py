"""Search: the query language, the rooms a user may search, and the full-text index of both databases.

The database's full-text index (SQLite FTS5, PostgreSQL tsvector + GIN, made by migrations/0004_search.py)
finds the candidates, newest first; this module then decides on each one with the same rules on both
databases (`Query.spans`), so both give the same results, and says where in `content` the words matched.
What each database indexes and how is in docs/search.md.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from tortoise.connection import get_connection

from .conversations import with_reactions
from .db import param_prefix
from .models import MESSAGE_FIELDS, message_json
from .rooms import admit, channel_room_name_sql
from .schemas import clean_text

MAX_QUERY = 200  # characters of q (API.md)
PREFIX_MIN = 3  # a word of at least this many characters also matches the words it begins
MAX_BATCH = 500  # candidates read at once while the rules turn some down
_TOKEN = re.compile(r"[^\W_]+")  # a word: letters and digits (what FTS5's unicode61 calls a token)
_QUOTED = re.compile(r'"([^"]*)"?')  # a phrase runs to its closing quote, or to the end of q
# scripts written without spaces between words: such a term matches anywhere inside a word
_UNSPACED = (
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x31F0, 0x31FF),
    (0x3400, 0x4DBF),  # CJK ideographs
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0xAC00, 0xD7AF),  # hangul syllables
    (0xFF66, 0xFF9F),  # half-width katakana
    (0x20000, 0x2FFFF),
)


class InvalidQuery(ValueError):
    """q is not a query: the API answers 400 validation_error with this message."""


@lru_cache(maxsize=4096)
def fold(char: str) -> str:
    """One character as search compares it: lower case; a Latin letter without its accents (é is e, as FTS5's
    remove_diacritics and PostgreSQL's unaccent both do). Other scripts keep their marks: FTS5 keeps them."""
    lowered = char.lower()
    if char < "\u0250" or "\u1e00" <= char <= "\u1eff":
        lowered = "".join(c for c in unicodedata.normalize("NFD", lowered) if not unicodedata.combining(c))
    return lowered


def unspaced(text: str) -> bool:
    return any(low <= ord(char) <= high for char in text for low, high in _UNSPACED)


@dataclass(frozen=True, slots=True)
class Word:
    """A folded word of a text and where it stands in the original: text[start:end]."""

    folded: str
    start: int
    end: int
    # folded position -> original position, for a match inside the word (CJK)
    origin: tuple[int, ...]


def words(text: str) -> list[Word]:
    found = []
    for match in _TOKEN.finditer(text):
        folded, origin = [], []
        for offset, char in enumerate(match[0], match.start()):
            piece = fold(char)
            folded.append(piece)
            origin.extend([offset] * len(piece))
        found.append(Word("".join(folded), match.start(), match.end(), tuple(origin)))
    return found


@dataclass(frozen=True, slots=True)
class Term:
    text: str  # folded

    @property
    def prefix(self) -> bool:
        return len(self.text) >= PREFIX_MIN

    @property
    def inside(self) -> bool:
        """CJK: the term may stand anywhere inside a word (those scripts put no spaces between words)."""
        return unspaced(self.text)

    def span_in(self, word: Word) -> tuple[int, int] | None:
        if word.folded == self.text or (self.prefix and word.folded.startswith(self.text)):
            return word.start, word.end
        if self.inside and (at := word.folded.find(self.text)) >= 0:
            end = at + len(self.text)
            return word.origin[at], (word.origin[end] if end < len(word.origin) else word.end)
        return None


@dataclass(frozen=True, slots=True)
class Query:
    terms: tuple[Term, ...]  # each must match a word
    phrases: tuple[tuple[str, ...], ...]  # each must match as consecutive whole words

    def spans(self, content: str) -> list[list[int]] | None:
        """Where the query matches content ([start, end] character offsets, in order), or None if it does not."""
        found: set[tuple[int, int]] = set()
        tokens = words(content)
        for term in self.terms:
            hits = [span for word in tokens if (span := term.span_in(word))]
            if not hits:
                return None
            found.update(hits)
        folded = [word.folded for word in tokens]
        for phrase in self.phrases:
            size = len(phrase)
            hits = [
                (tokens[i].start, tokens[i + size - 1].end)
                for i in range(len(tokens) - size + 1)
                if tuple(folded[i : i + size]) == phrase
            ]
            if not hits:
                return None
            found.update(hits)
        return [list(span) for span in sorted(found)]


def parse_query(q: str) -> Query:
    """q's words (all must match, any order) and "quoted phrases". Anything else in q (operators, stars,
    punctuation) only separates words; a word with punctuation inside ("e-mail", "don't") is a phrase."""
    if not 1 <= len(q) <= MAX_QUERY:
        raise InvalidQuery(f"q must be 1 to {MAX_QUERY} characters")
    try:
        clean_text(q)  # no NUL, no lone surrogates: as every text field
    except ValueError as exc:
        raise InvalidQuery(f"q {exc}") from None
    terms: dict[str, None] = {}  # in order, once each
    phrases: dict[tuple[str, ...], None] = {}
    pieces = [(match[1], True) for match in _QUOTED.finditer(q)]
    pieces += [(bare, False) for bare in _QUOTED.sub(" ", q).split()]
    for piece, quoted in pieces:
        folded = tuple(word.folded for word in words(piece))
        if any(unspaced(word) for word in folded):  # CJK: each word matches inside words, quoted or not
            terms.update(dict.fromkeys(folded))
        elif len(folded) > 1 or (quoted and folded):  # a quoted word is that word exactly, not a prefix
            phrases[folded] = None
        elif folded:
            terms[folded[0]] = None
    if not terms and not phrases:
        raise InvalidQuery("q must contain at least one word (letters or digits)")
    return Query(tuple(Term(text) for text in terms), tuple(phrases))


# ---------------------------------------------------------------- who may search what


def searchable_rooms(user_id: int, marker: str) -> tuple[str, list]:
    """The rooms whose messages this user may search, the one place that says so: SQL that is true for a
    message `m` of such a room, and its parameter values (`marker` is the parameter's marker, e.g. "?3").

    A direct message they sent or received, or a message of a channel they are a member of now (a channel they
    left is no longer searched; a member sees a channel's whole history). A condition, not a list of room
    names, so that it costs nothing however long the user's history is.
    """
    channels = f"SELECT {channel_room_name_sql('ms.channel_id')} FROM memberships ms WHERE ms.user_id = {marker}"  # noqa: S608
    condition = (
        f"((m.receiver_id IS NOT NULL AND (m.sender_id = {marker} OR m.receiver_id = {marker}))"
        f" OR m.room IN ({channels}))"
    )
    return condition, [user_id]


async def room_to_search(user_id: int, name: str) -> str:
    """`room=NAME`: the room, if this user may search it (rooms.admit: 404 for no such room, 403 for someone
    else's)."""
    return (await admit(user_id, name)).name


# ---------------------------------------------------------------- the index


def _dialect() -> str:
    return get_connection("default").capabilities.dialect


def fts5_expression(query: Query) -> str | None:
    """The FTS5 MATCH expression: every word ("deplo"* for a prefix) and phrase; CJK terms are left to
    search_sql's substring test. Words hold only letters and digits, so no quote can reach FTS5's syntax."""
    parts = [f'"{term.text}"' + ("*" if term.prefix else "") for term in query.terms if not term.inside]
    parts += ['"' + " ".join(phrase) + '"' for phrase in query.phrases]
    return " AND ".join(parts) or None


def tsquery_text(query: Query) -> str | None:
    """The same for PostgreSQL's to_tsquery: 'deplo':* & 'a' <-> 'phrase'."""
    parts = [f"'{term.text}'" + (":*" if term.prefix else "") for term in query.terms if not term.inside]
    parts += [" <-> ".join(f"'{word}'" for word in phrase) for phrase in query.phrases]
    return " & ".join(parts) or None


def search_sql(query: Query, user_id: int, room: str | None, newest_below: int | None, limit: int) -> tuple[str, list]:
    """The candidates: messages that the index finds in the rooms the user may search (or in `room`, one they
    may), below an id, newest first."""
    postgres = _dialect() == "postgres"
    mark = param_prefix()
    columns = ", ".join(f"m.{name}" for name in MESSAGE_FIELDS)
    source, order = "messages m", "m.id"
    values: list = []
    conditions: list[str] = ["m.event = ''", "NOT m.deleted"]  # messages (not changes), never deleted ones

    def value(item: object) -> str:
        values.append(item)
        return f"{mark}{len(values)}"

    if room is not None:
        conditions.append(f"m.room = {value(room)}")
    else:
        members, member_values = searchable_rooms(user_id, f"{mark}{len(values) + 1}")
        conditions.append(members)
        values.extend(member_values)
    if postgres:
        if text := tsquery_text(query):
            conditions.append(f"m.search_vector @@ chat_search_query({value(text)})")
    elif expression := fts5_expression(query):
        # FTS5 hands out its rows by rowid, newest first, and takes the id bound itself
        source, order = "messages_fts JOIN messages m ON m.id = messages_fts.rowid", "messages_fts.rowid"
        conditions.append(f"messages_fts MATCH {value(expression)}")
    if newest_below is not None:
        conditions.append(f"{order} < {value(newest_below)}")
    for term in query.terms:
        if term.inside:  # CJK: a substring of the content (lower() folds what has case in those texts)
            conditions.append(f"{'strpos' if postgres else 'instr'}(lower(m.content), {value(term.text)}) > 0")
    sql = (
        f"SELECT {columns} FROM {source} WHERE {' AND '.join(conditions)}"  # noqa: S608 - markers only
        f" ORDER BY {order} DESC LIMIT {value(limit)}"
    )
    return sql, values


async def search(
    user_id: int, query: Query, *, room: str | None = None, before: int | None = None, limit: int = 20
) -> tuple[list[dict], bool]:
    """The newest `limit` messages (below `before`) that match, each with its `matches`, and whether more do."""
    if room is not None:
        room = await room_to_search(user_id, room)
    found: list[dict] = []
    below = before
    batch = limit + 1
    connection = get_connection("default")
    while True:
        sql, values = search_sql(query, user_id, room, below, batch)
        _, rows = await connection.execute_query(sql, values)
        for row in rows:
            message = message_json(*row)
            spans = query.spans(message["content"])
            if spans is None:  # the index's words are wider than the rules (PostgreSQL folds more accents)
                continue
            found.append({**message, "matches": spans})
            if len(found) > limit:
                return await with_reactions(found[:limit]), True
        if len(rows) < batch:
            return await with_reactions(found), False
        below = rows[-1][0]
        batch = min(batch * 2, MAX_BATCH)


async def reindex() -> int:
    """Build the index again from the messages table; returns how many messages it holds."""
    connection = get_connection("default")
    if _dialect() == "postgres":
        # the stored tsvector is computed when a row is written: write every row again
        await connection.execute_query("UPDATE messages SET content = content")
        await connection.execute_query("REINDEX INDEX ix_messages_search")
    else:
        await connection.execute_query("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
    _, rows = await connection.execute_query("SELECT COUNT(*) FROM messages WHERE event = ''")
    return int(rows[0][0])
