"""Pseudo filesystems: the mounts a walk does not enter, and whose files are read to EOF.

``/proc``, ``/sys`` and their kin hold no data of their own: their files are views of the
kernel's state, regenerated at every read, with sizes that say nothing (sysfs reports 4096
for every attribute, procfs 0) and some that never end (``/proc/PID/pagemap`` covers the
whole address space, ``/proc/kcore`` all of memory). A walk that meets such a mount skips
it (``find -xdev``'s effect, for these types only); a root named on one is walked, and its
files are read to EOF with the size that was read, as ``sha256sum`` reads them.

The type comes from ``/proc/self/mountinfo`` (Linux), matched to files by ``st_dev``: one
read of a small file per run, and a set lookup per directory and per file. Without that
file (not Linux, no /proc mounted) no filesystem is pseudo and walks behave as before.
"""

from __future__ import annotations

import os

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


def mount_types(mountinfo: str = MOUNTINFO) -> dict[int, str]:
    """``st_dev`` -> filesystem type of every mount this process can see ({} if unknown).

    A mountinfo line is ``ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTS [TAGS...] - TYPE ...``
    (proc(5)); optional tags make the ``-`` the only fixed landmark.
    """
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    found: dict[int, str] = {}
    for line in lines:
        fields = line.split(" ")
        try:
            major, minor = fields[2].split(":")
            fstype = fields[fields.index("-", 6) + 1]
        except (IndexError, ValueError):
            continue
        found[os.makedev(int(major), int(minor))] = fstype
    return found


def pseudo_devices(mountinfo: str = MOUNTINFO) -> dict[int, str]:
    """``st_dev`` -> type of the mounts whose type is in ``PSEUDO_TYPES``."""
    return {dev: kind for dev, kind in mount_types(mountinfo).items() if kind in PSEUDO_TYPES}
