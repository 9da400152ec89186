"""The one walk of a folder of videos, for every command that takes one (extract, predict, class folders).

Recursive and sorted, following linked folders without looping; each entry that is not taken is
reported with its reason: hidden (``.name``: editor, OS and AppleDouble ``._clip.mp4`` files), other
extensions, broken symlinks, symlink loops, special files, folders that cannot be read, and folders
named like a video (searched as folders).
"""
import errno
import os
import stat
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

__all__ = ["VIDEO_EXTENSIONS", "find_videos", "summarize_skipped"]

# what counts as a video (compared lower-case)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".gif", ".flv", ".wmv",
                    ".3gp", ".ogv", ".ts", ".mts", ".m2ts")


def _entries(folder: Path, skip: list) -> list:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as e:
        skip.append((folder, f"folder cannot be read ({e.strerror or e})"))
        return []


def _walk(folder: Path, ancestors: frozenset, videos: List[Path], skip: list) -> None:
    for entry in _entries(folder, skip):
        path = Path(entry.path)
        if entry.name.startswith("."):
            skip.append((path, "hidden (name starts with '.')"))
            continue
        try:
            st = entry.stat()  # follows symlinks
        except OSError as e:
            why = "symlink loop" if e.errno == errno.ELOOP else "broken symlink"
            skip.append((path, why if entry.is_symlink() else f"cannot be read ({e.strerror or e})"))
            continue
        is_video = path.suffix.lower() in VIDEO_EXTENSIONS
        if stat.S_ISDIR(st.st_mode):
            real = os.path.realpath(path)
            if real in ancestors:
                skip.append((path, "symlink loop"))
                continue
            if is_video:
                skip.append((path, "folder named like a video (its contents are searched)"))
            _walk(path, ancestors | {real}, videos, skip)
        elif not stat.S_ISREG(st.st_mode):
            skip.append((path, "not a regular file"))
        elif is_video:
            videos.append(path)
        else:
            skip.append((path, f"not a video extension ({path.suffix.lower() or 'none'})"))


def find_videos(folder: Union[str, os.PathLike], skipped: Optional[list] = None) -> List[Path]:
    """Every video under ``folder``, sorted; what is not taken is appended to ``skipped`` as ``(path, reason)``."""
    folder = Path(folder)
    videos: List[Path] = []
    skip: List[Tuple[Path, str]] = []
    _walk(folder, frozenset({os.path.realpath(folder)}), videos, skip)
    if skipped is not None:
        skipped.extend(skip)
    return sorted(videos)


def summarize_skipped(skipped: Sequence[Tuple[Path, str]], root: Optional[Path] = None, names: int = 3) -> str:
    """One line: how many entries ``find_videos`` skipped, per reason, with the first few names."""
    groups: Dict[str, List[str]] = {}
    for path, why in skipped:
        try:
            name = str(Path(path).relative_to(root)) if root is not None else str(path)
        except ValueError:
            name = str(path)
        groups.setdefault(why, []).append(name)
    parts = [f"{len(v)} {why}: {', '.join(v[:names])}{', ...' if len(v) > names else ''}" for why, v in groups.items()]
    where = f" under {root}" if root is not None else ""
    return f"skipped {len(skipped)} {'entry' if len(skipped) == 1 else 'entries'}{where}: " + "; ".join(parts)
