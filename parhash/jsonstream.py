"""A JSON document read value by value through a sliding window: memory is bounded by the
largest single value (one record, the header), not by the document.

``json.load`` builds the whole document: a million-record manifest reformatted by ``jq .``
would cost gigabytes. A streaming library (ijson) would add a dependency for what the
standard library's C decoder already does: ``JSONDecoder.raw_decode`` decodes one value at
an offset, so the caller walks the outer structure (``{``, keys, ``,``, ``[``) itself and
hands each record to the C decoder. A value cut by the end of the window is decoded again
once more text has been read.
"""

from __future__ import annotations

import json
import re
from typing import TextIO

from parhash.exit_codes import FatalError

#: Characters read per refill: large enough that refills (and the re-decode of a value cut
#: by the window's end) are rare, small enough to be nothing next to the page cache.
CHUNK = 1 << 16

#: The largest single value accepted (a record, the header). A record is a few hundred
#: bytes, a header holds the command line (Linux caps it at a few MiB); a document that is
#: not JSON at all must not make the window grow without end.
MAX_VALUE = 32 << 20

#: An error this many characters before the window's end cannot be the window's fault:
#: the longest token a cut could break is ``-Infinity`` or a ``\\uXXXX`` escape.
_CUT_SLACK = 12

_WS = re.compile(r"[ \t\n\r]*")
_raw_decode = json.JSONDecoder().raw_decode


class JsonTextError(FatalError):
    """The text is not the JSON the caller expected; the message names the line."""


class JsonText:
    """The document's text, consumed from the front; ``line()`` says where we are."""

    def __init__(self, text: TextIO, source: str) -> None:
        self.text = text
        self.source = source
        self.buf = ""
        self.pos = 0
        self.eof = False
        self._line = 1  # line number at buffer offset self._counted
        self._counted = 0

    def line(self, pos: int | None = None) -> int:
        """The line number at ``pos`` (default: the current position); positions only grow,
        so counting is linear in the document."""
        pos = self.pos if pos is None else pos
        if pos > self._counted:
            self._line += self.buf.count("\n", self._counted, pos)
            self._counted = pos
        return self._line

    def where(self, pos: int | None = None) -> str:
        return f"{self.source}:{self.line(pos)}"

    def _more(self) -> bool:
        """Drop what was consumed and read more (at least as much as is pending, so a long
        value costs a logarithmic number of re-decodes); False at the end of the text."""
        if self.eof:
            return False
        if self.pos:
            self.line(self.pos)
            self.buf = self.buf[self.pos :]
            self._counted -= self.pos
            self.pos = 0
        try:
            chunk = self.text.read(max(CHUNK, len(self.buf)))
        except UnicodeDecodeError:
            raise JsonTextError(f"{self.where(len(self.buf))}: not UTF-8") from None
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def peek(self) -> str:
        """The next character that is not white space (not consumed); '' at the end."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return ""

    def take(self, allowed: str, what: str) -> str:
        """Consume one of the ``allowed`` punctuation characters; ``what`` names what was
        due, for the message."""
        found = self.peek()
        if found and found in allowed:
            self.pos += 1
            return found
        if not found:
            raise JsonTextError(f"{self.where()}: ends before {what} (truncated manifest?)")
        raise JsonTextError(f"{self.where()}: expected {what}, found {found!r}")

    def value(self) -> object:
        """Decode the next value whole (the caller has just peeked at it)."""
        while True:
            try:
                obj, end = _raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                offset = exc.pos - self.pos
                if self._window_cut(exc) and self._more():
                    continue
                raise self._error(exc.msg, self.pos + offset) from None
            except (ValueError, RecursionError) as exc:  # 4,301 digits; [[[[... nested
                raise JsonTextError(f"{self.where()}: not valid JSON ({exc})") from None
            if end == len(self.buf) and not isinstance(obj, (dict, list, str)) and self._more():
                continue  # a number or literal at the window's end may go on: decode again
            self.pos = end
            return obj

    def _window_cut(self, exc: json.JSONDecodeError) -> bool:
        """Could more text make this value valid? Only if the error is at the window's end
        (or in a string that runs to it), and the value is not already too large."""
        if len(self.buf) - self.pos > MAX_VALUE:
            raise JsonTextError(
                f"{self.where()}: a value larger than {MAX_VALUE >> 20} MiB: not a manifest"
            )
        return exc.pos + _CUT_SLACK >= len(self.buf) or exc.msg.startswith("Unterminated")

    def _error(self, msg: str, pos: int) -> JsonTextError:
        if self.eof and (pos + _CUT_SLACK >= len(self.buf) or msg.startswith("Unterminated")):
            return JsonTextError(f"{self.where()}: ends inside a value (truncated manifest?)")
        return JsonTextError(f"{self.where(pos)}: not valid JSON ({msg})")
