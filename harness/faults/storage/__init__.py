"""Storage faults (issue 11): a FUSE filesystem that can lose what was not fsynced.

``FaultFS`` mounts it for a run (an async context manager); ``WriteTracker`` is the model of
what a power loss forgets; ``cleanup`` unmounts what a crashed run left (``qiki-harness down``).
"""

from harness.faults.storage.model import StorageStats, WriteTracker
from harness.faults.storage.mount import (
    FaultFS,
    FaultFSError,
    cleanup,
    fuse_available,
    list_mounts,
)

__all__ = [
    "FaultFS",
    "FaultFSError",
    "StorageStats",
    "WriteTracker",
    "cleanup",
    "fuse_available",
    "list_mounts",
]
