"""A fine-tuned run -> the folder its Hub repo holds, and the upload (``tada-zoo push``).

``tada-zoo convert`` writes this folder for an original checkpoint; for a run of ``tada-zoo
train`` it is written here: ``model.safetensors`` (the run's weights, never a pickle),
``config.json`` in timm's hub format and ``README.md``, a video model card. Every statement in
them is the run's own (stored in its weights by ``train``: ``engine.checkpoint.run_metadata``):
the architecture and its arguments, the class names, the data protocol it was trained and is
evaluated with, the weights it started from, the user's dataset, and the figures of a ``tada-zoo
evaluate --output`` of exactly these weights (matched by sha256). The folder loads back with
``timm.create_model("hf-hub:user/name" | "local-dir:DIR", pretrained=True)``.
"""
import json
import os
import tempfile
from pathlib import Path
from typing import Optional, Tuple, Union

import torch

from tada_zoo import __version__
from tada_zoo._files import atomic_dir
from tada_zoo.data.protocol import TRAINING_ONLY, DataProtocol, protocol_cfg
from tada_zoo.engine.checkpoint import checkpoint_info, run_protocol, run_weights
from tada_zoo.models import WEIGHTS_NAME, create_video_model, repo_id

from .cards import run_card
from .hub import VIDEO_FIELDS, check_output_dir, hub_config, push_folder, sha256_file

__all__ = ["find_evaluation", "write_run_folder", "push_run"]

PathLike = Union[str, os.PathLike]
# fields of the starting weights' cfg that are not true of the fine-tuned model
_BASE_ONLY = ("hf_hub_id", "hf_hub_filename", "tag", "original_file", "original_url", "top1", "top5", "train_recipe",
              "published", "label_names", "label_descriptions", "init", "init_license", "dataset", "url", "file",
              "origin_url", "notes")


def _load_run(weights: Path) -> Tuple[torch.nn.Module, dict, DataProtocol]:
    """The run's model (its architecture, arguments and weights, strictly) and its test protocol."""
    run = checkpoint_info(weights)  # what train stored: model, arguments, heads, classes, protocol
    if not run["trained"]:
        raise ValueError(f"{weights} was not written by tada-zoo train, so it does not say what it was trained on; "
                         "publish converted releases with conversion/publish.py")
    if len(run["num_classes"]) != 1:
        raise ValueError(f"{weights} has {len(run['num_classes'])} heads; a Hub video classifier has one")
    model = create_video_model(run["model"], run["num_classes"][0], checkpoint=weights, head="strict",
                               **run["model_kwargs"]).eval()
    return model, run, run_protocol(model, run)


def find_evaluation(weights: Path, evaluation: Optional[PathLike] = None, sha: Optional[str] = None) -> Optional[dict]:
    """The figures of ``tada-zoo evaluate --output`` for exactly these weights: ``evaluation`` (its
    metrics.json or folder), else the newest metrics.json in the run folder whose checkpoint has
    the weights' sha256 (``sha``, when known); None when the run was never evaluated."""
    sha = sha or sha256_file(weights)
    if evaluation is not None:
        path = Path(evaluation)
        path = path / "metrics.json" if path.is_dir() else path
        found = _evaluated(path, sha)
        if found is None:
            raise ValueError(f"{path} is not the metrics.json of a tada-zoo evaluate of {weights} (no member has its "
                             "sha256); run tada-zoo evaluate --checkpoint on these weights with --output")
        return found
    candidates = sorted(weights.parent.glob("**/metrics.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    return next((r for r in map(lambda p: _evaluated(p, sha), candidates) if r), None)


def _evaluated(path: Path, sha: str) -> Optional[dict]:
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot be read as evaluate's metrics.json ({e})") from None
    return next((dict(m, file=str(path)) for m in results.values() if isinstance(m, dict)
                 and m.get("checkpoint_sha256") == sha), None) if isinstance(results, dict) else None


def _base_model(run: dict) -> Optional[str]:
    """The Hub repo of the registered weights training started from, if it did."""
    init = run.get("init") or ""
    if "." not in init or init.startswith(("file ", "2D ")):
        return None
    try:
        return repo_id(init)
    except ValueError:
        return None


def publish_config(model: torch.nn.Module, run: dict, protocol: DataProtocol, facts: dict) -> dict:
    """``config.json``: timm's hub format (architecture, arguments, classes, inputs) whose video
    entry and provenance are the run's, not those of the weights it started from."""
    config = hub_config(model, model_args=dict(run["model_kwargs"], num_frames=model.num_frames),
                        label_names=run["class_names"])
    cfg, video = config["pretrained_cfg"], config.setdefault("video", {})
    for key in _BASE_ONLY + ("pool_size",):
        cfg.pop(key, None)
        video.pop(key, None)
    for key, value in protocol_cfg(protocol).items():
        (video if key in VIDEO_FIELDS else cfg)[key] = value
    video.update(dataset=facts["dataset"], init=facts["init"])
    for key in ("top1", "top5"):
        if (facts.get("evaluation") or {}).get(key) is not None:
            video[key] = facts["evaluation"][key]
    if facts.get("repo"):
        cfg["hf_hub_id"] = facts["repo"]
    config["provenance"] = {k: v for k, v in facts.items() if k != "repo"}
    return config


def _facts(weights: Path, sha: str, run: dict, protocol: DataProtocol, dataset: Optional[str],
           evaluation: Optional[dict], repo: Optional[str]) -> dict:
    """What the config's provenance and the card state, all read from the run."""
    data = dict(run.get("dataset") or {})
    return dict(
        repo=repo, dataset=dataset or data.get("name") or "unnamed dataset", classes=run["class_names"],
        num_classes=run["num_classes"][0], trained_as=run["model"], init=run.get("init") or "unknown",
        base_model=_base_model(run), training_data=data,
        training_only={k: getattr(protocol, k) for k in TRAINING_ONLY}, run_summary=_run_summary(weights),
        evaluation=evaluation, source_file=weights.name, source_sha256=sha,
        written_by=f"tada-zoo {__version__}")


def _run_summary(weights: Path) -> Optional[dict]:
    """Epochs, best validation and the optimizer recipe from the run folder, where they are."""
    folder, out = weights.parent, {}
    for name, keys in (("summary.json", ("epochs", "best", "world_size")), ("recipe.json", ("recipe",))):
        try:
            values = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        out.update({k: values[k] for k in keys if k in values})
    return out or None


def write_run_folder(source: PathLike, output: PathLike, repo: Optional[str] = None, dataset: Optional[str] = None,
                     evaluation: Optional[PathLike] = None, with_app: bool = False) -> Path:
    """Write the Hub folder of a run (or of its weights file) to the new directory ``output``, all or
    nothing, after checking that it loads back through timm with the run's logits; ``with_app``
    adds the ``app.py`` + ``requirements.txt`` of a Gradio Space (``deploy.app.space_files``)."""
    if with_app and not repo:
        raise ValueError("with_app needs the repo id the app loads the model from")
    weights = run_weights(source)
    output = check_output_dir(output)
    model, run, protocol = _load_run(weights)
    sha = sha256_file(weights)
    facts = _facts(weights, sha, run, protocol, dataset, find_evaluation(weights, evaluation, sha), repo)
    config = publish_config(model, run, protocol, facts)

    def write(folder: Path) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        save_file(state, folder / WEIGHTS_NAME, metadata={"format": "pt", "model": run["model"]})
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (folder / "README.md").write_text(run_card(config, protocol))
        if with_app:
            from tada_zoo.deploy.app import space_files

            for name, text in space_files(repo).items():
                (folder / name).write_text(text)
        check_loads_back(folder, model, protocol)
        check_output_dir(output)  # still free?

    return atomic_dir(output, write)


def check_loads_back(folder: Path, model: torch.nn.Module, protocol: DataProtocol) -> None:
    """timm builds the folder into the same network, logits and test protocol (what users will load)."""
    import timm

    from tada_zoo.data.protocol import protocol_from_cfg

    loaded = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    size = protocol.test_crop
    x = torch.randn(1, 3, model.num_frames, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        same = torch.allclose(loaded(x), model(x), rtol=1e-4, atol=1e-5)
    mismatch = [k for k, v in vars(protocol_from_cfg(loaded.pretrained_cfg)).items()
                if k not in TRAINING_ONLY and v != getattr(protocol, k)]
    if not same or mismatch:
        raise RuntimeError(f"the folder written to publish does not load back as the run's model "
                           f"({'other logits' if not same else 'another data protocol: ' + ', '.join(mismatch)}); "
                           "nothing was written (please report this)")


def push_run(source: PathLike, repo: str, private: bool = False, dry_run: Optional[PathLike] = None,
             dataset: Optional[str] = None, evaluation: Optional[PathLike] = None,
             token: Optional[str] = None, with_app: bool = False) -> Tuple[Path, Optional[str]]:
    """Write the run's Hub folder and upload it to ``repo`` (``huggingface_hub``); with ``dry_run`` the
    folder is written there and nothing is uploaded. Returns (folder, repo id or None)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
        if "/" not in repo:
            raise HFValidationError("it needs a namespace")
    except HFValidationError as e:
        raise ValueError(f"--repo {repo!r} is not a Hub repo id of the form user/name ({e})") from None
    if dry_run is not None:
        return write_run_folder(source, dry_run, repo, dataset, evaluation, with_app), None
    with tempfile.TemporaryDirectory(prefix="tada-zoo-push-") as tmp:
        folder = write_run_folder(source, Path(tmp) / "repo", repo, dataset, evaluation, with_app)
        return folder, push_folder(folder, repo, token=token, private=private,
                                   commit_message=f"Add {Path(source).name} (tada-zoo push)")


