"""Checksum lines as GNU coreutils, b3sum and xxhsum write them, including odd file names.

A name containing a newline, a backslash or a carriage return cannot be written verbatim
on a line, so the coreutils rule applies: ``\\``, ``\\n`` and ``\\r`` inside the name, and a
``\\`` at the start of the line to say the name is escaped. Each algorithm follows the tool
that owns it (``ESCAPE_STYLES``): b3sum leaves a CR inside a name alone, xxhsum 0.8.1 escapes
nothing. With ``-z`` records end in NUL and nothing is escaped.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from parhash.algorithms import ALGORITHMS, BY_TAG, get_algorithm
from parhash.exit_codes import FatalError

#: How each peer escapes a name, so parhash's lines verify with the tool that owns the
#: algorithm. ``coreutils``: backslash, newline and CR (sha256sum, b2sum). ``b3sum``: CR
#: stays raw (b3sum 1.2 rejects the ``\\r`` escape and reads a raw CR back). ``xxhsum``:
#: xxhsum 0.8.1 writes every name verbatim and reads no escapes, so only a name that cannot
#: go on a line verbatim (a newline, or a CR at the end) is escaped, in the coreutils form
#: that xxhsum 0.8.2 reads.
ESCAPE_STYLES = ("coreutils", "b3sum", "xxhsum")


def escape_style(algo: str) -> str:
    """The escaping rule of the peer tool of ``algo`` (see ``ESCAPE_STYLES``)."""
    if algo.startswith("xxh"):
        return "xxhsum"
    return "b3sum" if algo == "blake3" else "coreutils"


def escape_name(name: str, *, style: str = "coreutils") -> tuple[str, bool]:
    """Return the name as it goes on a line, and whether the line needs the ``\\`` marker."""
    if style == "xxhsum":
        needed = "\n" in name or name.endswith("\r")
    elif style == "b3sum":
        needed = "\\" in name or "\n" in name
    else:
        needed = "\\" in name or "\n" in name or "\r" in name
    if not needed:
        return name, False
    name = name.replace("\\", "\\\\").replace("\n", "\\n")
    if style != "b3sum":
        name = name.replace("\r", "\\r")
    return name, True


def format_line(
    digest: str,
    name: str,
    *,
    tag: str | None = None,
    zero: bool = False,
    style: str = "coreutils",
) -> str:
    """One checksum record, terminator included (``\\n``, or NUL with ``zero``)."""
    marker = ""
    if not zero:
        name, escaped = escape_name(name, style=style)
        marker = "\\" if escaped else ""
    if tag is not None:
        return f"{marker}{tag} ({name}) = {digest}{chr(0) if zero else chr(10)}"
    return f"{marker}{digest}  {name}{chr(0) if zero else chr(10)}"


@dataclass(frozen=True, slots=True)
class ChecksumLine:
    """One parsed checksum line: the digest, the file name, and the algorithm if tagged."""

    digest: str  #: lowercase hex
    name: str  #: unescaped file name (surrogateescape str)
    tag_algo: str | None  #: algorithm named by a BSD tag or an ``XXH3_`` prefix, else None


class AmbiguousAlgorithm(FatalError):
    """No algorithm, or several, could have written digests of this length."""


class BadLine(ValueError):
    """A line that is not a checksum line; the message says why."""


_HEX = frozenset("0123456789abcdefABCDEF")

#: BSD tags -> algorithm names (the one table lives with the algorithms).
TAGS = BY_TAG


def unescape_name(name: str) -> str:
    """Undo ``escape_name`` (and b3sum's ``\\r``); any other escape is an error, never a guess."""
    out = []
    i = 0
    while i < len(name):
        ch = name[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = name[i + 1 : i + 2]
        if nxt == "\\":
            out.append("\\")
        elif nxt == "n":
            out.append("\n")
        elif nxt == "r":
            out.append("\r")
        else:
            raise BadLine("invalid backslash escape in file name")
        i += 2
    return "".join(out)


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in _HEX for c in text)


def parse_line(line: str) -> ChecksumLine:
    """Parse a GNU (``hex  name``, ``hex *name``), BSD tag (``ALGO (name) = hex``) or xxhsum
    (``XXH3_hex  name``) line, with or without the leading ``\\`` escape marker.

    GNU lines split at the first two-character separator, because a name may contain two
    spaces; tagged lines split at the last ``) = ``, because a name may contain that too.
    """
    escaped = line.startswith("\\")
    if escaped:
        line = line[1:]
    parsed = _parse_tagged(line) or _parse_gnu(line)
    if parsed is None:
        raise BadLine("improperly formatted checksum line")
    digest, name, tag = parsed
    if not name:
        raise BadLine("empty file name")
    if escaped:
        name = unescape_name(name)
    if "\0" in name:
        raise BadLine("NUL in file name")
    return ChecksumLine(digest.lower(), name, tag)


def _parse_tagged(line: str) -> tuple[str, str, str | None] | None:
    """``TAG (name) = hex``, or OpenSSL's ``TAG(name)= hex`` (coreutils reads both)."""
    if not line.endswith(tuple(_HEX)):
        return None
    open_paren = line.find(" (")
    head, sep, digest = line.rpartition(") = ")
    skip = 2
    if open_paren <= 0 or not sep:
        open_paren = line.find("(")
        head, sep, digest = line.rpartition(")= ")
        skip = 1
    if open_paren <= 0 or not sep or not _is_hex(digest) or len(head) < open_paren + skip:
        return None
    word = line[:open_paren]
    algo = tag_algorithm(word)
    if algo is None:
        if word.replace("-", "").isalnum():
            raise BadLine(f"unsupported algorithm {word!r}")
        return None
    return digest, head[open_paren + skip :], algo


def tag_algorithm(word: str) -> str | None:
    """The algorithm a BSD tag names: ``SHA256``, ``XXH3``, or ``BLAKE2b-N`` (``b2sum -l N
    --tag``; any N ``b2sum -l`` accepts: a multiple of 8 up to 512)."""
    tag = word.lower()
    if tag in TAGS:
        return TAGS[tag]
    if tag.startswith("blake2b-"):
        try:
            return get_algorithm(tag).name
        except KeyError:
            return None
    return None


def _parse_gnu(line: str) -> tuple[str, str, str | None] | None:
    space = line.find(" ")
    if space <= 0 or line[space + 1 : space + 2] not in (" ", "*"):
        return None
    digest, name = line[:space], line[space + 2 :]
    tag = None
    prefix, underscore, rest = digest.partition("_")
    if underscore and prefix.lower() in TAGS:
        tag, digest = TAGS[prefix.lower()], rest
    if not _is_hex(digest):
        return None
    return digest, name, tag


#: Substrings of a checksum file's name that say which algorithm wrote it (SHA256SUMS,
#: photos.md5, tree.b3). Longest first, so "sha256" is not taken for "sha2...".
NAME_HINTS = (
    ("sha3-256", "sha3-256"),
    ("sha512", "sha512"),
    ("sha384", "sha384"),
    ("sha256", "sha256"),
    ("sha224", "sha224"),
    ("sha1", "sha1"),
    ("md5", "md5"),
    ("blake3", "blake3"),
    ("b3", "blake3"),
    ("blake2b", "blake2b"),
    ("b2", "blake2b"),
    ("blake2s", "blake2s"),
    ("xxh128", "xxh128"),
    ("xxh64", "xxh64"),
    ("xxh32", "xxh32"),
    ("xxh3", "xxh3"),
)


def algorithm_from_name(name: str) -> str | None:
    """The algorithm a checksum file's name announces (``SHA256SUMS``, ``x.md5``, ``t.b3sum``),
    if any: a whole word of the name, optionally followed by ``sum`` or ``sums`` (so
    ``lab3.txt`` announces nothing)."""
    words = re.split(r"[^a-z0-9-]+", os.path.basename(name).lower())
    for hint, algo in NAME_HINTS:
        for word in words:
            if word in (hint, hint + "sum", hint + "sums"):
                return algo
    return None


#: Untagged digest lengths that xxhsum reads as one algorithm although parhash knows two:
#: 16 hex digits are XXH64 for ``xxhsum -c`` (its default, -H1); XXH3 lines are tagged.
XXHSUM_LENGTHS = {16: "xxh64"}


def algorithm_for_length(length: int, name: str, *, like_xxhsum: bool = False) -> str:
    """The one algorithm whose digests have ``length`` hex digits; ``like_xxhsum``: settle
    the lengths xxhsum settles (``XXHSUM_LENGTHS``) as it does."""
    if like_xxhsum and length in XXHSUM_LENGTHS:
        return XXHSUM_LENGTHS[length]
    candidates = [a.name for a in ALGORITHMS.values() if a.hex_length == length]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise AmbiguousAlgorithm(f"{name}: no supported algorithm has {length}-digit digests")
    raise AmbiguousAlgorithm(
        f"{name}: {length}-digit digests could be {', '.join(candidates)}: "
        "name the algorithm with -a"
    )
