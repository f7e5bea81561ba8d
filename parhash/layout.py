"""The manifest layout: its version, its header object H, and its record fields.

One home for what writers (report.py) and readers (manifest.py) of a manifest must agree on.
"""

from __future__ import annotations

import os
import sys
import time

#: Version of the manifest layout written by the json/jsonl/csv reporters; bumped only when
#: a key changes meaning or disappears (new keys may be added without a bump). 2: every
#: format starts with the header object (jsonl line 1, csv ``#parhash-header`` line), so a
#: version-1 reader refuses these files instead of misreading them.
MANIFEST_VERSION = 2

#: First characters of the csv header line: ``#parhash-header <compact JSON of the header>``.
CSV_HEADER_PREFIX = "#parhash-header "

#: Column order of csv output, and key order of jsonl/json records (with several algorithms
#: one more column/key per algorithm follows, named after it).
FIELDS = ("path", "size", "mtime", "algo", "hash", "error", "root")


def manifest_header(
    algos: tuple[str, ...], roots: list[str], *, relative: bool, options: dict, started: float
) -> dict:
    """The header object H of every manifest format (README: "Output formats").

    ``roots_abs`` is ``os.path.abspath`` (not realpath): the tree as the user named it, so a
    symlinked mount point still audits through the link. ``manifest_version`` repeats
    ``version`` under the key that version-1 readers check, so they refuse a newer file.
    """
    import socket  # here, not at the top: 2 ms of every start-up, for manifests only

    from parhash import __version__

    names = [os.fsdecode(r) for r in roots]
    return {
        "version": MANIFEST_VERSION,
        "manifest_version": MANIFEST_VERSION,
        "tool": "parhash",
        "tool_version": __version__,
        "algo": algos[0],
        "algos": list(algos),
        "roots": names,
        "roots_abs": [r if r == "-" else os.path.abspath(r) for r in names],
        "host": socket.gethostname(),
        "started": iso_time(started),
        "relative": relative,
        "options": options,
        "command": sys.argv,
    }


def iso_time(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
