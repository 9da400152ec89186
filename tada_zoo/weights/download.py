"""Opt-in download of a release's original checkpoint into the weights folder (``$TADA_ZOO_HOME``).

The original TAdaConv checkpoints are Google Drive files (each cfg's ``original_url``);
``gdown`` (``pip install 'tada-zoo[download]'``) fetches them, confirmation pages included.
A download takes its released name only once it is complete and a zip-format checkpoint
(not Drive's quota or error page); the model layer's one converter then turns it into the
cached safetensors. Never called implicitly: ``tada-zoo download NAME.TAG`` or ``--download``.
"""
import zipfile
from pathlib import Path
from typing import Optional

from tada_zoo._files import atomic_write
from tada_zoo.models import how_to_get, registered_cfg
from tada_zoo.models._weights import find_local_weights, original_path

__all__ = ["download_original"]


def download_original(name: str, url: Optional[str] = None, convert: bool = True, quiet: bool = False) -> Path:
    """Download the original checkpoint of ``arch.tag`` into the weights folder (skipped when it
    is there) and, with ``convert``, convert it; returns the converted file (else the original).
    ``url`` replaces the cfg's ``original_url`` (a mirror)."""
    cfg = registered_cfg(name)
    dest = original_path(cfg)
    if dest is None:
        raise ValueError(f"{name} has no original checkpoint to download; {how_to_get(name, cfg)}")
    url = url or cfg.original_url
    if not dest.is_file():
        if not url:
            raise ValueError(f"{name}: no download link is known for {dest.name}; save the file as {dest}")
        _fetch(url, dest, quiet)
    return (find_local_weights(name, cfg) or dest) if convert else dest


def _fetch(url: str, dest: Path, quiet: bool) -> None:
    manual = f"download {url} yourself and save it as {dest}"
    try:
        import gdown
    except ImportError:
        raise RuntimeError(f"downloading needs gdown: pip install 'tada-zoo[download]' (or {manual})") from None
    if not quiet:
        print(f"downloading {url} -> {dest}")

    def fetch(part: str) -> None:
        try:
            got = gdown.download(url=url, output=part, quiet=quiet)
        except Exception as e:  # gdown raises its own, requests' and OS errors: one message for all
            raise OSError(f"could not download {url} ({type(e).__name__}: {e}); {manual}") from None
        if not got or not Path(part).is_file() or not Path(part).stat().st_size:
            raise OSError(f"could not download {url}; {manual}")
        if not zipfile.is_zipfile(part):  # torch.save's format; an HTML page (quota, login) is not
            head = Path(part).read_bytes()[:32]
            raise OSError(f"what {url} returned is not a PyTorch checkpoint ({Path(part).stat().st_size} bytes "
                          f"starting {head!r}: a Google Drive quota or error page?); {manual}")

    atomic_write(dest, fetch)  # the released name only for a complete checkpoint
