"""Unit tests of parhash.sums: coreutils-compatible name escaping and checksum lines."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parhash.sums import escape_name, format_line

DIGEST = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def coreutils_unescape(text: str) -> str:
    """What ``sha256sum -c`` does to an escaped name: ``\\\\`` -> ``\\``, ``\\n`` -> newline."""
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            nxt = text[i + 1]
            out.append({"\\": "\\", "n": "\n"}[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@pytest.mark.parametrize(
    "name",
    [
        "plain.txt",
        "dir/sub/file",
        "with space",
        "tab\there",
        "-rf",
        "unicodé-日本",
        os.fsdecode(b"latin1-\xe9"),
        "",
    ],
)
def test_escape_name_leaves_ordinary_names_alone(name):
    assert escape_name(name) == (name, False)


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("back\\slash", "back\\\\slash"),
        ("new\nline", "new\\nline"),
        ("\n", "\\n"),
        ("\\", "\\\\"),
        # a literal backslash followed by "n" must stay distinguishable from a newline
        ("a\\nb", "a\\\\nb"),
        ("a\\\nb", "a\\\\\\nb"),
        ("x\n\\y\n", "x\\n\\\\y\\n"),
    ],
)
def test_escape_name_escapes_backslash_and_newline(name, escaped):
    assert escape_name(name) == (escaped, True)
    assert coreutils_unescape(escaped) == name


@settings(database=None, max_examples=200)
@given(st.text(alphabet=st.sampled_from(["a", "n", "\\", "\n", " ", "é", "\t"]), max_size=20))
def test_escape_name_round_trips(name):
    escaped, marker = escape_name(name)
    assert "\n" not in escaped
    assert marker == ("\\" in name or "\n" in name)
    assert (coreutils_unescape(escaped) if marker else escaped) == name


def test_format_line_plain():
    assert format_line(DIGEST, "dir/file name") == f"{DIGEST}  dir/file name\n"


def test_format_line_leading_dash_and_tab_are_verbatim():
    assert format_line(DIGEST, "-rf") == f"{DIGEST}  -rf\n"
    assert format_line(DIGEST, "a\tb") == f"{DIGEST}  a\tb\n"


def test_format_line_escaped_newline_has_leading_marker():
    assert format_line(DIGEST, "new\nline") == f"\\{DIGEST}  new\\nline\n"


def test_format_line_escaped_backslash_has_leading_marker():
    assert format_line(DIGEST, "back\\slash") == f"\\{DIGEST}  back\\\\slash\n"


def test_format_line_non_utf8_name_is_verbatim():
    name = os.fsdecode(b"caf\xe9")
    line = format_line(DIGEST, name)
    assert line.encode("utf-8", "surrogateescape") == DIGEST.encode() + b"  caf\xe9\n"


def test_format_line_tag():
    assert format_line(DIGEST, "a b", tag="SHA256") == f"SHA256 (a b) = {DIGEST}\n"


def test_format_line_tag_escaped():
    line = format_line(DIGEST, "x\n\\y", tag="SHA256")
    assert line == f"\\SHA256 (x\\n\\\\y) = {DIGEST}\n"


def test_format_line_zero_does_not_escape():
    assert format_line(DIGEST, "new\nline", zero=True) == f"{DIGEST}  new\nline\0"
    assert format_line(DIGEST, "back\\slash", zero=True) == f"{DIGEST}  back\\slash\0"
    assert format_line(DIGEST, "plain", zero=True) == f"{DIGEST}  plain\0"


def test_format_line_zero_tag_does_not_escape():
    line = format_line(DIGEST, "a\n\\b", tag="MD5", zero=True)
    assert line == f"MD5 (a\n\\b) = {DIGEST}\0"
