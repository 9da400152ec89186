"""The one atomic writer every output goes through: a unique temp file (or folder) next to the
target, renamed over it when complete (a crash or a full disk never leaves half a file), with the
permissions a plain write would give. It lives in the model layer, which writes the converted-weights
cache and imports nothing above it; the rest of the package reaches it as ``tada_zoo._files``."""
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Union

__all__ = ["atomic_write", "atomic_dir", "write_text", "file_mode", "dir_mode"]

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


def atomic_write(path: Union[str, os.PathLike], write: Callable[[str], None]) -> None:
    """``write(tmp_path)`` to ``.<name>.<random>.tmp`` next to ``path``, then rename it over ``path``."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give the path of the file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_text(path: Union[str, os.PathLike], text: str) -> None:
    """UTF-8 ``text`` to ``path``, atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_dir(path: Union[str, os.PathLike], write: Callable[[Path], None]) -> Path:
    """``write(tmp_dir)`` fills a temp folder next to ``path``, which then replaces ``path`` (absent or
    an empty folder) whole: readers see every file of the folder or none."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        write(tmp)
        os.chmod(tmp, dir_mode())  # mkdtemp makes private folders, safetensors private files
        for f in tmp.rglob("*"):
            os.chmod(f, dir_mode() if f.is_dir() else file_mode())
        if path.exists():
            path.rmdir()  # an empty folder (anything else raises): replaced by the finished one
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
