"""What `xft serve` accepts from a client, and how it says no: request bodies, their limits, error bodies.

Every refusal is a 4xx with a JSON `detail` that names the field (`inputs[2].text`), never a 500: the body
size is capped before it is read (`BodyLimit`), the models below refuse wrong types, extra keys, lone UTF-16
surrogates (JSON lets a client write "\\ud800", which no tokenizer can encode), NUL bytes in paths and
overlong codes; and error bodies never echo the client's input back (it may be huge, or not encodable).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_MAX_BODY_BYTES = 1_000_000
MAX_LANGUAGE_CHARS = 64
MAX_PATH_CHARS = 4096
_SURROGATE = re.compile("[\ud800-\udfff]")


def refuse_surrogates(value: str) -> str:
    found = _SURROGATE.search(value)
    if found:
        raise ValueError(f"holds a lone UTF-16 surrogate (\\u{ord(found.group()):04x} at character {found.start()}), "
                         "which is not text; send valid Unicode")
    return value


# ------------------------------------------------------------------------------------------ the bodies
class Row(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    language: str | None = Field(default=None, max_length=MAX_LANGUAGE_CHARS,
                                 description="language code, 'auto' (detect) or null (detect)")

    @field_validator("text", "language")
    @classmethod
    def valid_text(cls, value: str | None) -> str | None:
        return value if value is None else refuse_surrogates(value)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    language: str | None = Field(default=None, max_length=MAX_LANGUAGE_CHARS)
    inputs: list[Row] | None = None

    @field_validator("text", "language")
    @classmethod
    def valid_text(cls, value: str | None) -> str | None:
        return value if value is None else refuse_surrogates(value)

    @model_validator(mode="after")
    def one_form(self) -> PredictRequest:
        if (self.text is None) == (self.inputs is None):
            raise ValueError("give either 'text' (one row) or 'inputs' (a list of {text, language}), not both or neither")
        if self.inputs is not None and self.language is not None:
            raise ValueError("'language' goes inside each item of 'inputs'")
        if self.inputs is not None and not self.inputs:
            raise ValueError("'inputs' is empty")
        return self

    def rows(self) -> list[Row]:
        return [Row(text=self.text, language=self.language)] if self.inputs is None else self.inputs


class AdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=MAX_PATH_CHARS)
    pin: bool | None = None  # true pins, false unpins, omitted keeps the current state

    @field_validator("path")
    @classmethod
    def plain_path(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("holds a NUL character")
        return refuse_surrogates(value)


# ----------------------------------------------------------------------------------------- the refusals
def printable(value: Any, limit: int = 120) -> str:
    """`value` as text safe to put in a JSON answer: surrogates escaped, cut at `limit` characters."""
    text = value if isinstance(value, str) else str(value)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "…"


def where(loc: Sequence[Any]) -> str:
    """pydantic's error location as the client wrote it: ("body", "inputs", 2, "text") -> inputs[2].text."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{printable(part, 40)}" if out else printable(part, 40))
    return out or "body"


def validation_detail(errors: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A 422 body for pydantic's errors: one readable `detail` naming each field, and the errors without their input."""
    shown = []
    for error in errors:
        message = printable(error.get("msg", "invalid"), 300).removeprefix("Value error, ")
        shown.append({"loc": [printable(p, 40) if isinstance(p, str) else p for p in error.get("loc", ())],
                      "msg": message, "type": printable(error.get("type", ""), 60)})
    parts = [f"{where(e['loc'])}: {e['msg']}" for e in shown[:5]]
    more = f" (and {len(shown) - 5} more)" if len(shown) > 5 else ""
    return {"detail": "; ".join(parts) + more if parts else "invalid request", "errors": shown[:20]}


def json_bytes(content: Any) -> bytes:
    """JSON as the server sends it: ASCII only (a stray surrogate cannot break the encoding), no NaN."""
    return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


class BodyLimit:
    """ASGI middleware: 413 for a request body over `limit` bytes, whether declared by content-length or
    streamed in chunks. The body is read here in full (it is small by then) and replayed to the app."""

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = int(limit)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    return await self._reject(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await self._reject(send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

    async def _reject(self, send: Any) -> None:
        body = json_bytes({"detail": f"request body larger than the server's limit of {self.limit} bytes (max_body_bytes)"})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
