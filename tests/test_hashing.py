"""Unit tests of parhash.hashing: digests against independent implementations, error results."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable

import blake3
import pytest
import xxhash
from conftest import deadline, run_unprivileged

from parhash.algorithms import ALGORITHMS, get_algorithm
from parhash.hashing import CHUNK_SIZE, HashSettings, hash_file, hash_files
from parhash.tasks import Task, WorkSpec
from parhash.worker import run_task

#: Independent reference digests, one per algorithm parhash offers (hex strings).
REFERENCE: dict[str, Callable[[bytes], str]] = {
    "xxh3": lambda b: xxhash.xxh3_64(b).hexdigest(),
    "xxh128": lambda b: xxhash.xxh3_128(b).hexdigest(),
    "xxh64": lambda b: xxhash.xxh64(b).hexdigest(),
    "xxh32": lambda b: xxhash.xxh32(b).hexdigest(),
    "md5": lambda b: hashlib.md5(b).hexdigest(),
    "sha1": lambda b: hashlib.sha1(b).hexdigest(),
    "sha224": lambda b: hashlib.sha224(b).hexdigest(),
    "sha256": lambda b: hashlib.sha256(b).hexdigest(),
    "sha384": lambda b: hashlib.sha384(b).hexdigest(),
    "sha512": lambda b: hashlib.sha512(b).hexdigest(),
    "blake2b": lambda b: hashlib.blake2b(b).hexdigest(),
    "blake2s": lambda b: hashlib.blake2s(b).hexdigest(),
    "sha3-256": lambda b: hashlib.sha3_256(b).hexdigest(),
    "blake3": lambda b: blake3.blake3(b).hexdigest(),
}

#: Well-known digests of b"abc" (FIPS 180 / RFC 1321 / BLAKE3 test vectors), so the reference
#: table itself is checked against published values, not only against the libraries.
KNOWN_ABC = {
    "md5": "900150983cd24fb0d6963f7d28e17f72",
    "sha1": "a9993e364706816aba3e25717850c26c9cd0d89d",
    "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    "blake3": "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85",
}

SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 7]


def payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)


@pytest.fixture(scope="module")
def sized_files(tmp_path_factory) -> dict[int, str]:
    """One file per size in SIZES, created once for the module."""
    directory = tmp_path_factory.mktemp("sized")
    files = {}
    for size in SIZES:
        path = directory / f"f{size}"
        path.write_bytes(payload(size))
        files[size] = str(path)
    return files


def test_reference_table_covers_every_algorithm():
    assert set(REFERENCE) == set(ALGORITHMS)
    for name, digest in KNOWN_ABC.items():
        assert REFERENCE[name](b"abc") == digest


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_hash_file_matches_reference(name, size, sized_files):
    path = sized_files[size]
    data = payload(size)
    result = hash_file(path, get_algorithm(name), True)
    assert result == (size, os.stat(path).st_mtime_ns, REFERENCE[name](data), None)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_hex_length_matches_digest(name):
    algo = ALGORITHMS[name]
    assert algo.name == name
    assert algo.hex_length == len(REFERENCE[name](b"x"))


@pytest.mark.parametrize("name", ["sha256", "xxh3", "blake3"])
def test_reused_buffer_does_not_leak_between_files(name, tmp_path):
    """A big file, then a small one, then big again: the shared read buffer must not bleed."""
    big = tmp_path / "big"
    small = tmp_path / "small"
    big_data = payload(2 * CHUNK_SIZE + 3)
    small_data = b"tiny"
    big.write_bytes(big_data)
    small.write_bytes(small_data)
    algo = get_algorithm(name)
    assert hash_file(str(big), algo, False)[2] == REFERENCE[name](big_data)
    assert hash_file(str(small), algo, False)[2] == REFERENCE[name](small_data)
    assert hash_file(str(big), algo, False)[2] == REFERENCE[name](big_data)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_hash_files_keeps_order_and_errors(name, tmp_path):
    contents = {"a": b"alpha", "b": payload(CHUNK_SIZE + 1), "c": b""}
    for file_name, data in contents.items():
        (tmp_path / file_name).write_bytes(data)
    paths = (
        str(tmp_path / "c"),
        str(tmp_path / "missing"),
        str(tmp_path / "a"),
        str(tmp_path / "b"),
    )
    results = hash_files(paths, [get_algorithm(name)], False, HashSettings((name,)))
    assert len(results) == 4
    for path, result in zip(paths, results, strict=True):
        base = os.path.basename(path)
        if base == "missing":
            assert result[:3] == (None, None, None)
            assert result[3] == os.strerror(2)
        else:
            data = contents[base]
            assert result == (len(data), os.stat(path).st_mtime_ns, REFERENCE[name](data), None)


def test_a_task_accepts_an_alias(tmp_path):
    (tmp_path / "f").write_bytes(b"data")
    task = Task(0, str(tmp_path), ((f"{tmp_path}/", ("f",)),))
    result = run_task(WorkSpec(HashSettings(("XXH3_64",))), task)
    assert result.rows == [
        (0, 4, os.stat(tmp_path / "f").st_mtime_ns, (REFERENCE["xxh3"](b"data"),), None)
    ]


def test_missing_file_is_an_error_result(tmp_path):
    result = hash_file(str(tmp_path / "nope"), get_algorithm("sha256"), True)
    assert result == (None, None, None, "No such file or directory")


@pytest.mark.parametrize("follow", [True, False])
def test_directory_is_an_error_result(tmp_path, follow):
    result = hash_file(str(tmp_path), get_algorithm("sha256"), follow)
    assert result == (None, None, None, "not a regular file (directory)")


@pytest.mark.parametrize("follow", [True, False])
def test_fifo_is_an_error_result_and_does_not_block(tmp_path, follow):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with deadline(5):
        result = hash_file(str(fifo), get_algorithm("xxh3"), follow)
    assert result == (None, None, None, "not a regular file (FIFO)")


def test_symlink_not_followed_is_an_error_result(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"through the link")
    link = tmp_path / "link"
    link.symlink_to(target)
    result = hash_file(str(link), get_algorithm("sha256"), False)
    assert result == (None, None, None, "is a symbolic link (not followed)")


def test_symlink_followed_hashes_the_target(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"through the link")
    link = tmp_path / "link"
    link.symlink_to(target)
    result = hash_file(str(link), get_algorithm("sha256"), True)
    expected = hashlib.sha256(b"through the link").hexdigest()
    assert result == (16, os.stat(target).st_mtime_ns, expected, None)


def test_dangling_symlink_followed_is_an_error_result(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    result = hash_file(str(link), get_algorithm("sha256"), True)
    assert result == (None, None, None, "No such file or directory")


def test_unreadable_file_is_an_error_result(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    secret = tree / "secret"
    secret.write_bytes(b"no")
    secret.chmod(0)
    tree.chmod(0o755)
    result = run_unprivileged(
        lambda: hash_file("secret", get_algorithm("sha256"), False), str(tree)
    )
    assert result == (None, None, None, "Permission denied")


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("xxh3_64", "xxh3"),
        ("xxh3-64", "xxh3"),
        ("XXH3_64", "xxh3"),
        ("xxh3_128", "xxh128"),
        ("sha3_256", "sha3-256"),
        ("SHA3-256", "sha3-256"),
        ("SHA256", "sha256"),
        (" md5 ", "md5"),
        ("BLAKE3", "blake3"),
    ],
)
def test_get_algorithm_aliases(alias, name):
    assert get_algorithm(alias) is ALGORITHMS[name]


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_get_algorithm_canonical_names(name):
    assert get_algorithm(name).name == name


@pytest.mark.parametrize("bad", ["nope", "", "sha", "xxh3 64", "sha-256x"])
def test_get_algorithm_unknown_raises_keyerror(bad):
    with pytest.raises(KeyError):
        get_algorithm(bad)
