"""Hard links read once: every path of a multiply-linked inode gets a record, one read.

Workers do not read a file whose fstat shows more than one link; they answer ``Deferred``
(device, inode, size, mtime). The first path of an inode is sent back to the pool as a
one-file batch that does read it; its digest then becomes the record of every path of that
inode seen so far, and of any later one while the inode is remembered. Memory: pending
inodes are bounded by what is in flight; resolved ones sit in an LRU of ``REMEMBERED``
entries (a link met after its inode was forgotten is simply read again: correct, not
deduplicated). Snapshot trees where every file has links outside the tree cost one
extra round trip per such file, never a wrong digest.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

from parhash.hashing import Deferred
from parhash.model import Batch, Expected, FileRecord

#: Resolved inodes remembered for links met later (~150 bytes each).
REMEMBERED = 65_536


@dataclass(frozen=True, slots=True)
class _Waiting:
    path: str
    root: str
    expected: Expected | None


class LinkResolver:
    """Turns ``Deferred`` results into records, asking the executor for one read per inode."""

    def __init__(self, executor) -> None:
        self.executor = executor
        self.pending: dict[tuple, list[_Waiting]] = {}
        self.resolving: dict[int, tuple] = {}  # batch id of the one read -> inode key
        self.resolved: OrderedDict[tuple, tuple] = OrderedDict()

    def defer(self, batch: Batch, index: int, result: Deferred) -> list[FileRecord]:
        """A deferred path: a record now if its inode is known, else wait for the read."""
        key = (result.dev, result.ino, batch.algo)
        expected = batch.expected[index] if batch.expected else None
        path = batch.paths[index]
        known = self.resolved.get(key)
        if known is not None and known[:2] == (result.size, result.mtime_ns):
            self.resolved.move_to_end(key)
            return [_record(path, batch.root, expected, known)]
        waiting = _Waiting(path, batch.root, expected)
        if key in self.pending:
            self.pending[key].append(waiting)
            return []
        self.pending[key] = [waiting]
        read = replace(
            batch,
            paths=(path,),
            ready=(),
            expected=(expected,) if expected else (),
            read_links=True,
        )
        self.resolving[self.executor.inject(read)] = key
        return []

    def settle(self, batch: Batch, raw: tuple) -> list[FileRecord]:
        """The one read of an inode came back: a record for every path waiting on it."""
        key = self.resolving.pop(batch.batch_id)
        waiting = self.pending.pop(key, [])
        if raw[3] is None:
            self.resolved[key] = raw
            if len(self.resolved) > REMEMBERED:
                self.resolved.popitem(last=False)
        # waiting[0] is the path that was read: the batch's own result is its record.
        return [_record(w.path, w.root, w.expected, raw) for w in waiting[1:]]


def _record(path: str, root: str, expected: Expected | None, raw: tuple) -> FileRecord:
    size, mtime_ns, digest, error = raw
    if type(digest) is tuple:
        return FileRecord(path, root, size, mtime_ns, digest[0], error, expected, digest[1:])
    return FileRecord(path, root, size, mtime_ns, digest, error, expected)
