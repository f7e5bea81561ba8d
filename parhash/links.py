"""Hard links read once: every path of a multiply-linked inode gets a record, one read.

Workers do not read a file whose fstat shows more than one link; their result lists it as
deferred (index, device, inode, size, mtime). The first path of an inode is sent back to the
executor as a one-file task that does read it (``read_links``); its row then becomes the
record of every path of that inode seen so far, and of any later one while the inode is
remembered. Memory: pending inodes are bounded by what is in flight; resolved ones sit in an
LRU of ``REMEMBERED`` entries (a link met after its inode was forgotten is simply read
again: correct, not deduplicated). Snapshot trees where every file has links outside the
tree cost one extra round trip per such file, never a wrong digest.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from parhash.batching import Context
from parhash.model import Expected, FileRecord
from parhash.tasks import Row, Task, row_record

#: Resolved inodes remembered for links met later (~150 bytes each).
REMEMBERED = 65_536


@dataclass(frozen=True, slots=True)
class _Waiting:
    path: str
    root: str
    expected: Expected | None


class LinkResolver:
    """Turns deferred files into records, asking for one read per inode.

    ``submit`` registers a new task's context and hands the task to the executor; ``ids``
    gives it an id no other task of the run has.
    """

    def __init__(self, submit: Callable[[Context], None], ids: Iterator[int]) -> None:
        self.submit = submit
        self.ids = ids
        self.pending: dict[tuple, list[_Waiting]] = {}
        self.resolving: dict[int, tuple] = {}  # task id of the one read -> inode key
        self.resolved: OrderedDict[tuple, Row] = OrderedDict()

    def defer(self, context: Context, link: tuple[int, int, int, int, int]) -> list[FileRecord]:
        """A deferred file: its record now if its inode is known, else wait for the read."""
        index, dev, ino, size, mtime_ns = link
        task = context.task
        key = (dev, ino, task.algos)
        expected = context.expected_at(index)
        path = task.path_at(index)
        known = self.resolved.get(key)
        if known is not None and known[1:3] == (size, mtime_ns):
            self.resolved.move_to_end(key)
            return [row_record(path, task.root, expected, known)]
        waiting = _Waiting(path, task.root, expected)
        if key in self.pending:
            self.pending[key].append(waiting)
            return []
        self.pending[key] = [waiting]
        read: Task = replace(task.single(index, next(self.ids)), read_links=True)
        self.resolving[read.task_id] = key
        self.submit(Context(read, [], (expected,) if expected else ()))
        return []

    def is_read(self, task_id: int) -> bool:
        return task_id in self.resolving

    def settle(self, task_id: int, rows: list[Row]) -> list[FileRecord]:
        """The one read of an inode came back: a record for every other path waiting on it
        (the read path's own record is the task's)."""
        key = self.resolving.pop(task_id)
        waiting = self.pending.pop(key, [])
        if not rows:  # skipped by a size filter after all: so are the others
            return []
        row = rows[0]
        if row[4] is None:
            self.resolved[key] = row
            if len(self.resolved) > REMEMBERED:
                self.resolved.popitem(last=False)
        return [row_record(w.path, w.root, w.expected, row) for w in waiting[1:]]
