"""The Hugging Face Hub side of tada-zoo: config.json, the converted-folder writer, push.

A Hub repo ``tada-zoo/<arch>.<tag>`` holds ``model.safetensors`` (our state dict, never a
pickle), ``config.json`` in timm's hub format (so ``timm.create_model("hf-hub:...")``
works) and ``README.md``, the model card (``cards``) rendered from the model's pretrained cfg.
``hub_configs/<arch>.<tag>/`` keeps the config and card of every released checkpoint in
the repository (``conversion/make_hub_configs.py``); the converter writes the same two
files next to the weights with the real sha256s filled in.
"""
import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Dict, Optional, Union

import torch.nn as nn
from timm.models import PretrainedCfg
from timm.models._hub import save_config_for_hf

from tada_zoo._files import atomic_dir, write_text
from tada_zoo.models import WEIGHTS_NAME, VideoPretrainedCfg, registered_cfg
from tada_zoo.deploy.profile import empty_model, model_stats, stats_of

from .cards import render_model_card, untagged_card

__all__ = ["hub_config", "write_hub_files", "save_converted", "push_folder", "sha256_file", "VIDEO_FIELDS"]


# video facts of VideoPretrainedCfg that timm's PretrainedCfg does not know: they go to a
# top-level "video" entry of config.json, where timm's hub loader leaves them alone
_TIMM_FIELDS = {f.name for f in dataclasses.fields(PretrainedCfg)}
VIDEO_FIELDS = [f.name for f in dataclasses.fields(VideoPretrainedCfg)
                if f.name not in _TIMM_FIELDS and f.name != "published"]

# ---- config.json and model card --------------------------------------------------------

def hub_config(model: nn.Module, stats: Optional[dict] = None, model_args: Optional[dict] = None,
               label_names: Optional[list] = None) -> dict:
    """timm's hub ``config.json`` for ``model`` (timm.models._hub.save_config_for_hf), with the
    video facts moved from ``pretrained_cfg`` to a top-level ``"video"`` entry (timm builds a
    plain PretrainedCfg from ``pretrained_cfg`` and would reject them there). ``model_args``:
    the constructor arguments that rebuild it (default: its frames)."""
    model_args = dict(model_args or {})
    if getattr(model, "num_frames", None):
        model_args.setdefault("num_frames", model.num_frames)
    with tempfile.TemporaryDirectory() as tmp:
        save_config_for_hf(model, Path(tmp) / "config.json", model_args=model_args,
                           model_config=dict(label_names=list(label_names)) if label_names else None)
        config = json.loads((Path(tmp) / "config.json").read_text())
    pretrained_cfg = config["pretrained_cfg"]
    pretrained_cfg.pop("published", None)
    video = {k: pretrained_cfg.pop(k) for k in VIDEO_FIELDS if k in pretrained_cfg}
    if video:
        config["video"] = video
    if stats:
        config["profile"] = dict(stats)
    return config


def write_hub_files(name: str, out_dir: Union[str, Path], gflops: Optional[float] = None) -> Dict[str, str]:
    """``config.json`` + ``README.md`` of ``arch.tag`` from the registry (no weights needed);
    returns their text (what ``hub_configs/<name>/`` must contain). ``gflops``: a known count
    (counting is the slow part), else counted."""
    cfg = registered_cfg(name)
    model = empty_model(name, num_classes=cfg.num_classes)
    stats = stats_of(name, cfg, model, dict(num_classes=cfg.num_classes), gflops)
    files = {
        "config.json": json.dumps(hub_config(model, stats), indent=2) + "\n",
        "README.md": render_model_card(name, stats),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for fname, text in files.items():
        write_text(out_dir / fname, text)
    return files


# ---- files ----------------------------------------------------------------------------

def sha256_file(path: Union[str, Path]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_output_dir(output: Union[str, Path]) -> Path:
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise FileExistsError(
            f"output {output} already exists and is not an empty directory; choose a new directory "
            f"(nothing was written)")
    return output


def save_converted(model: nn.Module, name: str, output: Union[str, Path], provenance: dict) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` to ``output`` at once: they
    are written to a temporary sibling directory that is renamed only when complete."""
    from safetensors.torch import save_file

    def write(folder: Path) -> None:
        # own copies: safetensors refuses tensors that share memory (views, tied weights)
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        save_file(state, folder / WEIGHTS_NAME, metadata={"format": "pt", "model": name})
        stats = model_stats(name, num_classes=model.num_classes)
        config = dict(hub_config(model, stats), provenance=dict(
            provenance, converted_sha256=sha256_file(folder / WEIGHTS_NAME)))
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        card = render_model_card if "." in name else untagged_card
        (folder / "README.md").write_text(card(name, stats, config["provenance"]))
        check_output_dir(output)  # still free?

    return atomic_dir(check_output_dir(output), write)


def push_folder(folder: Union[str, Path], repo: str, token: Optional[str] = None, private: bool = False,
                commit_message: str = "Add converted weights") -> str:
    """Upload a converted folder as it is (what the tests loaded is what gets published).

    timm's ``push_to_hf_hub`` re-serialises the model, adds a ``.bin`` and an image-task card,
    so the already written folder is uploaded with ``HfApi.upload_folder`` instead.
    """
    from huggingface_hub import HfApi

    folder = Path(folder)
    if list(folder.glob("*.bin")) or not (folder / WEIGHTS_NAME).exists():
        raise ValueError(f"{folder} must hold {WEIGHTS_NAME} and no pickled .bin weights")
    api = HfApi(token=token or os.environ.get("HF_TOKEN"))
    repo = api.create_repo(repo, private=private, exist_ok=True).repo_id
    app = [name for name in ("app.py", "requirements.txt") if (folder / name).is_file()]  # push --with-app
    api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message=commit_message,
                      allow_patterns=[WEIGHTS_NAME, "config.json", "README.md"] + app)
    return repo
