"""How ``--help`` is laid out: honest usage lines and words that are never cut in two.

Typer (and the click it builds on, vendored as ``typer._click`` since typer 0.26) wraps
help text with ``textwrap`` defaults: a word is split at a hyphen (``dedupe-`` /
``links``, ``sha3-`` / ``256``) and a word longer than the column is cut anywhere
(``added,removed,mo`` / ``dified``). Its usage line writes a required argument with a
metavar as ``{MANIFEST}`` and a repeatable one as ``[PATH]``, without the ``...`` that says
it repeats. The classes here are given to typer with ``cls=``; they change only layout.
"""

from __future__ import annotations

import importlib
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

from typer.core import TyperCommand, TyperGroup

_BaseContext = TyperCommand.context_class
_BaseFormatter = _BaseContext.formatter_class
# click's ``wrap_text`` imports its TextWrapper from this module at every call (click 8 and
# typer's vendored copy alike), so swapping the module attribute reaches every wrap.
_textwrap = importlib.import_module(_BaseFormatter.__module__.rsplit(".", 1)[0] + "._textwrap")
_ClickWrapper = _textwrap.TextWrapper


class _WholeWords(_ClickWrapper):  # type: ignore[misc, valid-type]
    """click's wrapper, breaking lines at spaces only: a line may run past the column
    rather than cut an option name, a default or a URL in two."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.update(break_on_hyphens=False, break_long_words=False)
        super().__init__(*args, **kwargs)

    # click's wrapper overrides this to cut a long word at the column whatever
    # break_long_words says ($PARHAS / H_CACHE_DIR at COLUMNS=40): the standard library's
    # own method honours it and puts the word on a line of its own.
    _handle_long_word = textwrap.TextWrapper._handle_long_word


@contextmanager
def _whole_words() -> Iterator[None]:
    _textwrap.TextWrapper = _WholeWords
    try:
        yield
    finally:
        _textwrap.TextWrapper = _ClickWrapper


class HelpFormatter(_BaseFormatter):  # type: ignore[misc, valid-type]
    """The formatter of every parhash command: click's, with whole-word wrapping."""

    def write_usage(self, *args, **kwargs) -> None:
        with _whole_words():
            super().write_usage(*args, **kwargs)

    def write_text(self, *args, **kwargs) -> None:
        with _whole_words():
            super().write_text(*args, **kwargs)

    def write_dl(self, *args, **kwargs) -> None:
        with _whole_words():
            super().write_dl(*args, **kwargs)


class _Context(_BaseContext):  # type: ignore[misc, valid-type]
    formatter_class = HelpFormatter


def usage_metavar(param) -> str:
    """``PATH`` if required, ``[PATH]`` if optional, ``...`` after either if it repeats
    (the POSIX utility-syntax convention: ``[PATH]...``)."""
    name = param.metavar or (param.name or "").upper()
    text = name if param.required else f"[{name}]"
    return text + "..." if param.nargs != 1 else text


class Command(TyperCommand):
    """A typer command with the whole-word formatter and a POSIX-style usage line."""

    context_class = _Context

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(usage_metavar(param))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


class Group(TyperGroup):
    """The ``parhash`` group: the same formatter as its commands."""

    context_class = _Context


def examples(*commands: str) -> str:
    """An ``Examples:`` block for an epilog: one command a line, never rewrapped (click's
    ``\\b`` paragraph), since a command wrapped in two reads as two commands."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {command}" for command in commands) + "\n\n"
