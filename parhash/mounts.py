"""Pseudo filesystems: the mounts a walk does not enter, and whose files are read to EOF.

``/proc``, ``/sys`` and their kin hold no data of their own: their files are views of the
kernel's state, regenerated at every read, with sizes that say nothing (sysfs reports 4096
for every attribute, procfs 0) and some that never end (``/proc/PID/pagemap`` covers the
whole address space, ``/proc/kcore`` all of memory). A walk that meets such a mount skips
it (``find -xdev``'s effect, for these types only); a root named on one is walked, and its
files are read to EOF with the size that was read, as ``sha256sum`` reads them.

The type comes from ``/proc/self/mountinfo`` (Linux): one read of a small file per walk.
The walker knows the mount points below its root by path, so it stats only a directory
that is one (a stat of every directory cost 12 us each, +80% on a walk of 3,000
directories of 10 files); a worker matches a file's ``st_dev`` (a set lookup). Without
that file (not Linux, no /proc mounted) no filesystem is pseudo and walks are as before.
"""

from __future__ import annotations

import os
import re

#: Filesystem types whose mounts a walk does not enter. Each is a kernel interface, not
#: storage: proc/sysfs (process and device state), devtmpfs/devpts (device nodes only, which
#: a walk would report one by one as "not a regular file"), cgroup/cgroup2, debugfs,
#: tracefs (``trace_pipe`` blocks), securityfs, pstore, bpf, configfs, fusectl,
#: binfmt_misc, mqueue, efivarfs (firmware variables), selinuxfs, nsfs (namespace
#: handles), rpc_pipefs, nfsd. Not here: tmpfs, ramfs, overlay, fuse and every disk
#: filesystem (they hold files), autofs (entering it mounts the real filesystem).
PSEUDO_TYPES = frozenset(
    {
        "proc",
        "sysfs",
        "devtmpfs",
        "devpts",
        "cgroup",
        "cgroup2",
        "debugfs",
        "tracefs",
        "securityfs",
        "pstore",
        "bpf",
        "configfs",
        "fusectl",
        "binfmt_misc",
        "mqueue",
        "efivarfs",
        "selinuxfs",
        "nsfs",
        "rpc_pipefs",
        "nfsd",
    }
)

#: Most bytes read from one file on a pseudo filesystem (block devices excepted: a disk
#: has a real end). 64 MiB is 12 times the largest real content measured on Linux 6.x
#: (``/sys/kernel/btf/vmlinux`` 5.5 MB, ``/proc/kallsyms`` 5.4 MB) and far below the
#: files that have no meaningful end (``pagemap``: 256 GiB of page-table view, read at
#: ~2.7 GB/s, so rejecting one costs ~25 ms); ``/dev/zero`` named on the command line hits
#: it too. Past it the file is an error record, never a digest of a prefix.
PSEUDO_READ_LIMIT = 64 * 1024 * 1024

MOUNTINFO = "/proc/self/mountinfo"


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def pseudo_mounts(mountinfo: str = MOUNTINFO) -> list[tuple[str, int, str]]:
    """(mount point, ``st_dev``, type) of every pseudo mount this process can see ([] if
    mountinfo cannot be read).

    A mountinfo line is ``ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTS [TAGS...] - TYPE ...``
    (proc(5)); optional tags make the ``-`` the only fixed landmark.
    """
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split(" ")
        try:
            major, minor = fields[2].split(":")
            fstype = fields[fields.index("-", 6) + 1]
        except (IndexError, ValueError):
            continue
        if fstype in PSEUDO_TYPES:
            dev = os.makedev(int(major), int(minor))
            found.append((_unescape(fields[4]), dev, fstype))
    return found


def pseudo_devices(mountinfo: str = MOUNTINFO) -> dict[int, str]:
    """``st_dev`` -> type of the pseudo mounts."""
    return {dev: fstype for _, dev, fstype in pseudo_mounts(mountinfo)}
