"""The one atomic writer every output goes through: a unique temp file (or folder) next to the
target, renamed over it when complete (a crash or a full disk never leaves half a file), with the
permissions a plain write would give. It lives in the model layer, which writes the converted-weights
cache and imports nothing above it; the rest of the package reaches it as ``tada_zoo._files``."""
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional, Union

__all__ = ["atomic_write", "atomic_dir", "write_text", "file_mode", "dir_mode", "check_writable", "WriteError"]

_FULL = 1 << 20  # a file system with less than this left for users is full


class WriteError(OSError):
    """A write that failed, in one line: which file and why (disk full, permission, ...)."""


def _free(folder: Path) -> Optional[int]:
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _write_error(path: Path, e: BaseException) -> Optional[WriteError]:
    """``e`` raised while writing ``path`` as a ``WriteError`` naming both, or None (not a write
    problem: re-raised as it is). Writers word a full disk differently (OSError ENOSPC, safetensors'
    SafetensorError, torch.save's RuntimeError "unexpected pos"), so the disk's free space decides."""
    if isinstance(e, WriteError):
        return e
    code = getattr(e, "errno", None) if isinstance(e, OSError) else None
    safetensors = type(e).__name__ == "SafetensorError"
    if code is None and not safetensors and not isinstance(e, RuntimeError):
        return None  # the caller's own error (a bad value, a failed download): as it is
    free = _free(path.parent if path.parent.exists() else Path.cwd())
    if code in (errno.ENOSPC, errno.EDQUOT) or (free is not None and free < _FULL):
        return WriteError(errno.ENOSPC, f"cannot write {path}: the disk is full ({(free or 0) // 1024} KiB left "
                                        f"on the file system of {path.parent}); free some space or write elsewhere")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return WriteError(code, f"cannot write {path}: {os.strerror(code).lower()}; choose a folder you can write to")
    if code is not None or safetensors:
        return WriteError(code or errno.EIO, f"cannot write {path}: {e}")
    return None


def check_writable(folder: Union[str, os.PathLike], what: str = "") -> Path:
    """Make ``folder`` if needed and write (then remove) a file in it, before any long work whose
    result would go there; a ``WriteError`` naming ``what`` (the flag), the folder and the cause."""
    folder = Path(folder)
    where = f"{what} {folder}" if what else str(folder)
    if folder.exists() and not folder.is_dir():
        raise WriteError(errno.ENOTDIR, f"{where} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        why = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or str(e)).lower()
        raise WriteError(e.errno or errno.EIO, f"{where} cannot be written to ({why}); choose a folder you can "
                                               "write to (nothing was run)") from None
    return folder


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
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        os.chmod(tmp, file_mode())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException as e:
        err = _write_error(path, e) if isinstance(e, Exception) else None  # before the temp file frees space
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if err is not None and err is not e:
            raise err from None
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
    except BaseException as e:
        err = _write_error(path, e) if isinstance(e, Exception) else None  # before the temp folder frees space
        shutil.rmtree(tmp, ignore_errors=True)
        if err is not None and err is not e:
            raise err from None
        raise
    return path
