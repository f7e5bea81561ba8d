"""Checksum lines as GNU coreutils, b3sum and xxhsum write them, including odd file names.

A name containing a newline or a backslash cannot be written verbatim on a line, so the
coreutils rule applies: ``\\`` and ``\\n`` inside the name, and a ``\\`` at the start of the
line to say the name is escaped. With ``-z`` records end in NUL and nothing is escaped.
Only these two characters are escaped: coreutils 9.1 (Debian 12) does not unescape ``\\r``.
"""

from __future__ import annotations


def escape_name(name: str) -> tuple[str, bool]:
    """Return the name as it goes on a line, and whether the line needs the ``\\`` marker."""
    if "\\" not in name and "\n" not in name:
        return name, False
    return name.replace("\\", "\\\\").replace("\n", "\\n"), True


def format_line(digest: str, name: str, *, tag: str | None = None, zero: bool = False) -> str:
    """One checksum record, terminator included (``\\n``, or NUL with ``zero``)."""
    marker = ""
    if not zero:
        name, escaped = escape_name(name)
        marker = "\\" if escaped else ""
    if tag is not None:
        return f"{marker}{tag} ({name}) = {digest}{chr(0) if zero else chr(10)}"
    return f"{marker}{digest}  {name}{chr(0) if zero else chr(10)}"
