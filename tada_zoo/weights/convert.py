"""Original TAdaConv checkpoints (``.pyth``) -> tada-zoo safetensors + Hub config + model card.

The file is read, mapped and checked by the one converter of the model layer
(``models._weights.convert_original``: ``read_checkpoint``, the family's
``checkpoint_filter_fn``, an exact fit of every key and shape, the release's stored-config
check), the same that converts originals dropped in the weights folder on first use; this
module writes the folder, all or nothing.
"""
import time
from pathlib import Path
from typing import Callable, Optional, Union

import timm

from tada_zoo import __version__
from tada_zoo.engine.checkpoint import checkpoint_info, resolve_run
from .hub import check_output_dir, registered_cfg, save_converted, sha256_file
from tada_zoo.models._weights import check_against_cfg, convert_original, describe_original_cfg

__all__ = ["convert_checkpoint", "describe_original_cfg", "check_against_cfg", "convert_original"]


def convert_checkpoint(model_name: Optional[str], checkpoint: Union[str, Path], output: Union[str, Path],
                       ema: bool = False, cfg_check: bool = True,
                       step: Optional[Callable[[str], None]] = None) -> Path:
    """Convert ``checkpoint`` for ``model_name`` (``arch.tag`` of a release, or an architecture,
    whose classes then come from the checkpoint's classifier) into the directory ``output``:
    ``model.safetensors``, ``config.json`` (timm hub format), ``README.md`` (model card).
    ``step(stage)`` is called as each stage starts (``tada-zoo convert`` prints them). Weights written
    by ``tada-zoo train`` are rebuilt from what they store (model, arguments, classes: ``model_name``
    may be None) into the folder ``tada-zoo push`` publishes."""
    output = check_output_dir(output)  # fail before the expensive part
    if Path(checkpoint).suffix != ".pyth" and checkpoint_info(checkpoint)["trained"]:
        # weights of tada-zoo train: they say their model and arguments; --model, if given, must agree
        resolve_run(checkpoint, model_name)
        if step is not None:
            step(f"{Path(checkpoint).name} is a tada-zoo train run's: writing its Hub folder (as tada-zoo push)")
        from .publish import write_run_folder
        return write_run_folder(checkpoint, output)
    if not model_name:
        raise ValueError(f"--model is needed: {checkpoint} does not say which model it holds")
    arch, _, tag = model_name.partition(".")
    if not timm.is_model(arch):
        raise ValueError(f"unknown model {arch!r}; see timm.list_models() after import tada_zoo")
    if tag:
        registered_cfg(model_name)  # a valid tag, else the list of them
    model, info = convert_original(model_name, checkpoint, ema=ema, cfg_check=cfg_check, step=step)
    if step is not None:
        step(f"writing {output} (sha256s, safetensors, config.json, model card)")
    provenance = dict(
        source_file=Path(checkpoint).name, source_sha256=sha256_file(checkpoint),
        state_key=info["state_key"], converter=f"tada-zoo {__version__}")
    return save_converted(model, model_name, output, provenance)


def stage_printer(prefix: str = "", file=None) -> Callable[[str], None]:
    """A ``step`` callback printing one line per stage with the time since the first one."""
    import sys

    start = time.time()
    return lambda stage: print(f"{prefix}[{time.time() - start:5.1f} s] {stage}", file=file or sys.stderr, flush=True)
