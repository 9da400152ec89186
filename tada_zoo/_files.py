"""File helpers every writer shares: temp files get the permissions a normal write would give."""
import os

__all__ = ["file_mode", "dir_mode"]


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would, for a moment, for every thread)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """``0666 & ~umask``: what ``open(path, "w")`` gives (``tempfile.mkstemp`` makes 0600)."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """``0777 & ~umask`` (``tempfile.mkdtemp`` makes 0700)."""
    return 0o777 & ~_umask()
