"""The digest algorithms: one table of names, tags, lengths and constructors.

The one home of every algorithm fact: the CLI validates names here, the worker builds its
hashers here, the sums format takes its BSD tags from here (``BY_TAG``), the manifest
reader its digest lengths.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import xxhash


@dataclass(frozen=True)
class Algorithm:
    """A named digest: how to start a streaming hash, and how to hash one buffer in one call."""

    name: str
    tag: str  #: the BSD-style tag (``SHA256 (file) = ...``) that coreutils/xxhsum/b3sum print
    hex_length: int
    new: Callable[[], object]
    oneshot: Callable[[memoryview], str]


def _hashlib(name: str, tag: str) -> Algorithm:
    constructor = getattr(hashlib, name.replace("-", "_"))
    length = constructor().digest_size * 2
    return Algorithm(name, tag, length, constructor, lambda b: constructor(b).hexdigest())


def _blake3_new() -> object:
    import blake3  # imported lazily: only runs that ask for blake3 pay for it

    return blake3.blake3(max_threads=blake3.blake3.AUTO)


def _blake3_oneshot(data: memoryview) -> str:
    import blake3

    return blake3.blake3(data).hexdigest()


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in [
        Algorithm("xxh3", "XXH3", 16, xxhash.xxh3_64, xxhash.xxh3_64_hexdigest),
        Algorithm("xxh128", "XXH128", 32, xxhash.xxh3_128, xxhash.xxh3_128_hexdigest),
        Algorithm("xxh64", "XXH64", 16, xxhash.xxh64, xxhash.xxh64_hexdigest),
        Algorithm("xxh32", "XXH32", 8, xxhash.xxh32, xxhash.xxh32_hexdigest),
        _hashlib("md5", "MD5"),
        _hashlib("sha1", "SHA1"),
        _hashlib("sha224", "SHA224"),
        _hashlib("sha256", "SHA256"),
        _hashlib("sha384", "SHA384"),
        _hashlib("sha512", "SHA512"),
        _hashlib("blake2b", "BLAKE2b"),
        _hashlib("blake2s", "BLAKE2s"),
        _hashlib("sha3-256", "SHA3-256"),
        Algorithm("blake3", "BLAKE3", 64, _blake3_new, _blake3_oneshot),
    ]
}

#: Other spellings people type (xxhsum and hashlib names).
ALIASES = {"xxh3_64": "xxh3", "xxh3-64": "xxh3", "xxh3_128": "xxh128", "sha3_256": "sha3-256"}

DEFAULT_ALGORITHM = "xxh3"


def get_algorithm(name: str) -> Algorithm:
    """Look up an algorithm by name or alias, case-insensitively; KeyError lists nothing."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    found = ALGORITHMS.get(key)
    return found if found is not None else _blake2b_truncated(key)


#: ``b2sum -l N`` digests: BLAKE2b with an N-bit output, N a multiple of 8 up to 512
#: (``BLAKE2b-256 (f) = ...``). Not listed in ALGORITHMS: 63 names nobody scans with.
_BLAKE2B_LENGTH = re.compile(r"blake2b-([0-9]{1,3})")


@functools.cache
def _blake2b_truncated(key: str) -> Algorithm:
    match = _BLAKE2B_LENGTH.fullmatch(key)
    bits = int(match.group(1)) if match else 0
    if not bits or bits % 8 or bits > 512:
        raise KeyError(key)
    if bits == 512:
        return ALGORITHMS["blake2b"]
    constructor = functools.partial(hashlib.blake2b, digest_size=bits // 8)
    return Algorithm(
        key,
        f"BLAKE2b-{bits}",
        bits // 4,
        constructor,
        lambda b: constructor(b).hexdigest(),
    )


class UnknownAlgorithm(ValueError):
    """An algorithm name not in the table; the message lists the choices."""

    def __init__(self, given: object, *, in_list: bool = False) -> None:
        what = f"in {given!r}" if in_list else repr(given)
        super().__init__(f"unknown algorithm {what}; choose from: {', '.join(ALGORITHMS)}")
        self.given = given


def canonical(name: object) -> str:
    """The one check of an algorithm name (``-a NAME``, a manifest header's ``algo``): its
    canonical name; UnknownAlgorithm for anything else, a non-string included."""
    try:
        return get_algorithm(name).name  # type: ignore[arg-type]
    except (KeyError, AttributeError):
        raise UnknownAlgorithm(name) from None


def canonical_list(spec: str) -> tuple[str, ...]:
    """``-a NAME[,NAME...]`` checked: ``parse_algorithms`` raising UnknownAlgorithm."""
    try:
        return parse_algorithms(spec)
    except KeyError:
        raise UnknownAlgorithm(spec, in_list=True) from None


def parse_algorithms(spec: str) -> tuple[str, ...]:
    """``"sha256,xxh3"`` -> canonical names, in order, without repeats; KeyError if unknown."""
    names: list[str] = []
    for part in spec.split(","):
        name = get_algorithm(part).name
        if name not in names:
            names.append(name)
    if not names:
        raise KeyError(spec)
    return tuple(names)


#: BSD tags (lower case, and xxhsum's ``XXH3_`` GNU-style prefix) -> algorithm names.
BY_TAG: dict[str, str] = {a.tag.lower(): a.name for a in ALGORITHMS.values()} | {"xxh3_64": "xxh3"}
