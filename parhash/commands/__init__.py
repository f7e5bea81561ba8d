"""The commands as library calls: one module per command, each the whole run of it.

- ``scan.py``: hash trees into a report format (``parhash scan``); ``records()`` is the
  iterator behind ``parhash.scan``.
- ``check.py``: verify checksum files (``parhash check``).
- ``audit.py``: compare a tree with a manifest and maybe rewrite it (``parhash audit``).
- ``outputs.py``: where a command's data goes (stdout, atomic ``-o`` files).

Each command takes typed options, parsed once (``parhash.options.ScanOptions``, the
command's own option object), and returns a result with the ``exit_code`` the CLI exits
with. The commands print nothing themselves: data goes to the stream they are given,
warnings to the ``progress`` sink (``Warnings`` collects them for a library caller), so
``cli.py`` only parses arguments, calls a command and prints. Fatal problems raise
``parhash.exit_codes.FatalError`` (the CLI's exit 2).
"""

from __future__ import annotations

from parhash.progress import NullProgress


class Warnings(NullProgress):
    """A progress sink with no bar that keeps the warnings instead of printing them: what a
    library call uses, so that it writes nothing to its caller's stdout or stderr."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def warn(self, message: str) -> None:
        self.messages.append(message)
