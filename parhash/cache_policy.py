"""What the hash cache trusts, and how much of what it trusts is read again anyway.

A cache hit means "this file's metadata is what it was when its content was hashed", never
"its content is intact": bit rot, or a same-size write by someone who then restores the
mtime (root can restore the ctime too, with the clock or a raw device), is invisible to a
stat. So the rules here are in two halves:

- **Trust** (``CacheOptions.trust``, ``stamp``): an entry stands for the file when size,
  mtime_ns, ctime_ns and inode all equal the file's stat now (restic's and bup's rule: ctime
  changes on every write and on every ``touch -d``, so a tool that restores the mtime still
  shows). ``--cache-trust size,mtime`` drops ctime and inode for filesystems where they are
  not stable (FUSE, SMB, a tree copied or restored elsewhere). ``st_dev`` is never used: it
  changes between NFS clients, removable disks and ZFS snapshots (fclones #321). An entry
  hashed within ``RACY_NS`` of the file's own timestamps is never trusted (git's racy-git
  rule): a write in the same timestamp tick as our read would leave the stat unchanged.
- **Verification** (``Budget``, ``--verify-budget``, ``--verify-max-age``): every run re-reads
  some of its hits, the stalest verification first (borg's ``--max-duration``, scorch's
  ``-M/-T``), so every file is read in full again within a known number of runs.

Everything is parsed once here (``cache_options``) into a frozen ``CacheOptions`` that the
pipeline passes down unchanged.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass

#: The stat fields an entry records, in the order of its stamp (``stamp``). A
#: ``--cache-trust`` choice is a prefix of them: the fields compared are the stamp's
#: first bytes (size and mtime always; then ctime; then the inode, only with ctime).
STAMP_FIELDS = ("size", "mtime", "ctime", "inode")
FULL_TRUST = frozenset(STAMP_FIELDS)
MIN_TRUST = frozenset(STAMP_FIELDS[:2])

#: An entry whose file changed (mtime, or ctime when trusted) less than this before it was
#: hashed is never trusted. Timestamp granularity is 1 ns on ext4/xfs/btrfs, but 2 s on
#: FAT, 1 s on HFS+ and some NFS/SMB servers, and a write lands in the page cache before it
#: moves the mtime: git's racy-git rule, borg's and bup's "newer than start - 1 s".
RACY_NS = 2 * 1_000_000_000

#: Runs of a root after which an entry its runs no longer see is dropped (borg's
#: ``BORG_FILES_CACHE_TTL``): a file moved away for a while keeps its entry, a deleted
#: one does not live forever.
TTL_RUNS = 20

#: The database's file name inside the cache directory.
CACHE_FILE = "cache.sqlite3"

_DURATION_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Budget:
    """How much of the hits to re-read each run: a fraction of the root's entries (by bytes
    and by count, so both a few huge files and many small ones rotate), a number of bytes,
    or a number of seconds (bytes estimated from the root's last measured rate, and the
    workers stop verifying when the time is up)."""

    fraction: float = 0.0
    nbytes: int = 0
    seconds: float = 0.0

    @property
    def empty(self) -> bool:
        return not (self.fraction or self.nbytes or self.seconds)


@dataclass(frozen=True)
class CacheOptions:
    """``--cache`` and its companions, parsed once."""

    #: The directory holding ``CACHE_FILE`` (already resolved: option, env, XDG).
    directory: str
    #: Stat fields that must match (``FULL_TRUST`` or a superset of ``MIN_TRUST``).
    trust: frozenset[str] = FULL_TRUST
    budget: Budget = Budget()
    #: Re-read any hit not verified for this long (None: no limit; 0: every hit).
    max_age_s: float | None = None

    @property
    def path(self) -> str:
        return os.path.join(self.directory, CACHE_FILE)

    @property
    def trusted_fields(self) -> tuple[str, ...]:
        """The fields compared, in stamp order."""
        return STAMP_FIELDS[: len(self.trust)]

    @property
    def stamp_length(self) -> int:
        """Bytes of an entry's stamp that must equal the file's (``stamp``)."""
        return 8 * len(self.trust)


def cache_directory(explicit: str | None = None) -> str:
    """``--cache-dir``, else ``$PARHASH_CACHE_DIR``, else ``$XDG_CACHE_HOME/parhash``, else
    ``~/.cache/parhash`` (the XDG base directory spec: a relative XDG_CACHE_HOME is ignored)."""
    if explicit:
        return os.path.abspath(explicit)
    env = os.environ.get("PARHASH_CACHE_DIR")
    if env:
        return os.path.abspath(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = xdg if xdg and os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "parhash")


def parse_trust(text: str) -> frozenset[str]:
    """``--cache-trust``: a comma list of size, mtime, ctime, inode; size and mtime are
    always required (without them nothing would tell an edited file from its old self)."""
    fields = {f.strip().lower() for f in text.split(",") if f.strip()}
    fields = {"inode" if f == "ino" else f for f in fields}
    unknown = sorted(fields - FULL_TRUST)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; choose from size, mtime, ctime, inode")
    if not fields >= MIN_TRUST:
        raise ValueError("size and mtime are always required (e.g. size,mtime)")
    if set(STAMP_FIELDS[: len(fields)]) != fields:  # the inode without the ctime
        raise ValueError("inode is compared only together with ctime (size,mtime,ctime,inode)")
    return frozenset(fields)


def parse_duration(text: str) -> float:
    """``90s``, ``30m`` (minutes), ``2h``, ``7d``, ``1w``, or plain seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)?\s*", text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (examples: 90s, 30m, 2h, 7d)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


def parse_budget(text: str) -> Budget:
    """``--verify-budget``: ``5%`` of the root's entries, a size (``200G``, 1024-based as
    ``--max-size``; ``200GB`` 1000-based) or a duration (``30m``: lower-case m is minutes,
    upper-case M is mebibytes)."""
    from parhash.walk import parse_size

    spec = text.strip()
    if spec.endswith("%"):
        try:
            percent = float(spec[:-1])
        except ValueError:
            raise ValueError(f"not a percentage: {text!r}") from None
        if not 0 <= percent <= 100:
            raise ValueError(f"{text!r} is not between 0% and 100%")
        return Budget(fraction=percent / 100)
    if re.fullmatch(r"\d+(?:\.\d+)?\s*(s|m|min|h|d|w)", spec):
        return Budget(seconds=parse_duration(spec))
    try:
        return Budget(nbytes=parse_size(spec))
    except ValueError:
        raise ValueError(
            f"not a budget: {text!r} (a percentage 5%, a size 200G or a duration 30m)"
        ) from None


def cache_options(
    enabled: bool,
    directory: str | None = None,
    trust: str | None = None,
    verify_budget: str | None = None,
    verify_max_age: str | None = None,
) -> CacheOptions | None:
    """CacheOptions from the flat options (CLI, library), or None without a cache.

    ``--cache-dir`` alone turns the cache on (naming where it lives says you want it);
    ``--cache-trust``, ``--verify-budget`` and ``--verify-max-age`` without a cache are a
    usage error (they would silently do nothing): ValueError names the option.
    """
    if not enabled and directory is None:
        for name, value in (
            ("--cache-trust", trust),
            ("--verify-budget", verify_budget),
            ("--verify-max-age", verify_max_age),
        ):
            if value is not None:
                raise ValueError(f"{name} needs --cache")
        return None
    return CacheOptions(
        directory=cache_directory(directory),
        trust=_parsed("--cache-trust", parse_trust, trust, FULL_TRUST),
        budget=_parsed("--verify-budget", parse_budget, verify_budget, Budget()),
        max_age_s=_parsed("--verify-max-age", parse_duration, verify_max_age, None),
    )


def _parsed(name: str, parse, text: str | None, default):
    """``parse(text)``, or ``default`` for None; a ValueError names the option."""
    if text is None:
        return default
    try:
        return parse(text)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


#: The library's names for the cache options (``parhash.scan``/``parhash.audit`` keywords).
LIBRARY_KEYWORDS = ("cache", "cache_dir", "cache_trust", "verify_budget", "verify_max_age")


def library_cache_options(given: dict) -> CacheOptions | None:
    """CacheOptions from a library call's keywords (``LIBRARY_KEYWORDS``); another keyword
    is a TypeError, a bad value a ValueError (as the CLI's usage errors)."""
    unknown = sorted(set(given) - set(LIBRARY_KEYWORDS))
    if unknown:
        raise TypeError(f"unknown option {unknown[0]!r}")
    return cache_options(
        bool(given.get("cache")),
        given.get("cache_dir"),  # type: ignore[arg-type]
        given.get("cache_trust"),  # type: ignore[arg-type]
        given.get("verify_budget"),  # type: ignore[arg-type]
        given.get("verify_max_age"),  # type: ignore[arg-type]
    )


#: An entry's stat fields (``STAMP_FIELDS``), packed: size, mtime_ns, ctime_ns (signed
#: 64-bit), inode (unsigned 64-bit: overlayfs with xino and NFS file ids use the high bit).
#: The entry's value is this stamp followed by its raw digests (``entry_value``), so a
#: lookup is one ``startswith`` per file instead of four field comparisons (issue 12).
_STAMP = struct.Struct("<qqqQ")
#: Bytes of the stamp at the head of an entry's value.
STAMP_LENGTH = _STAMP.size

#: ``racy`` column values: trusted under both rules; racy only when the ctime is
#: compared (the ctime was too recent); racy under both (the mtime was). A lookup fetches
#: entries whose racy value is below ``racy_limit``.
NOT_RACY, RACY_CTIME, RACY_MTIME = 0, 1, 2


def stamp(st: os.stat_result, length: int = STAMP_LENGTH) -> bytes:
    """The first ``length`` bytes of the stamp (``CacheOptions.stamp_length``): what the
    trust rule compares, as the head of an entry's value."""
    packed = _STAMP.pack(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    return packed if length == STAMP_LENGTH else packed[:length]


def entry_value(st: os.stat_result, digests: tuple[str, ...]) -> bytes:
    """An entry's value: the full stamp, then each digest's bytes (hex is twice as long)."""
    return stamp(st) + b"".join(bytes.fromhex(d) for d in digests)


def digests_of(value: bytes, lengths: tuple[int, ...]) -> tuple[str, ...]:
    """The hex digests an entry's value holds, for algorithms of these hex lengths."""
    out, at = [], STAMP_LENGTH
    for length in lengths:
        out.append(value[at : at + length // 2].hex())
        at += length // 2
    return tuple(out)


def racy(st: os.stat_result, hashed_ns: int) -> int:
    """How racy an entry hashed at ``hashed_ns`` is (``RACY_NS``, git's racy-git rule),
    decided once when it is written: a file that changed less than 2 s before its read
    may change again within the same timestamp tick without its stat showing it."""
    if hashed_ns - st.st_mtime_ns < RACY_NS:
        return RACY_MTIME
    if hashed_ns - st.st_ctime_ns < RACY_NS:
        return RACY_CTIME
    return NOT_RACY


def racy_limit(stamp_length: int) -> int:
    """Entries with a ``racy`` value below this can be trusted: a recent ctime matters only
    where the ctime is compared."""
    return RACY_CTIME if stamp_length > 16 else RACY_MTIME
