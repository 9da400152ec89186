"""The package's atomic writers (``atomic_write``, ``atomic_dir``, ``write_text``): defined once in the
model layer (``models/_files.py``, which caches converted weights and imports nothing above it)."""
from .models._files import WriteError, atomic_dir, atomic_write, check_writable, dir_mode, file_mode, write_text

__all__ = ["atomic_write", "atomic_dir", "write_text", "file_mode", "dir_mode", "check_writable", "WriteError"]
