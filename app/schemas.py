"""Schema bases and cursor pagination shared by every domain."""

import base64
import binascii
import json
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict

from app.errors import InvalidField, UnprocessableError


class WriteModel(BaseModel):
    """A request body: unknown fields are rejected, so a misspelt field never passes silently."""

    model_config = ConfigDict(extra="forbid")


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    """One page of a list; pass `next_cursor` as `cursor` to get the next page, null at the end."""

    items: list[ItemT]
    next_cursor: str | None


Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page (1-1000).")]
Cursor = Annotated[
    str | None, Query(description="`next_cursor` from the previous page; omit for the first.")
]


CursorT = TypeVar("CursorT", int, str)


def encode_cursor(after: int | str) -> str:
    """Encode the sort key of a page's last item as an opaque cursor."""
    raw = json.dumps({"after": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: type[CursorT]) -> CursorT:
    """Decode a cursor made by `encode_cursor`; a tampered or foreign cursor gets a 422."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position: Any = json.loads(raw)
    except (binascii.Error, ValueError):
        position = None
    after = position.get("after") if isinstance(position, dict) else None
    if type(after) is not kind:
        raise UnprocessableError(
            f"Invalid cursor {cursor[:40]!r}; pass the `next_cursor` value of the previous page.",
            errors=[InvalidField(location="query.cursor", message="not a cursor of this list")],
        )
    return after
