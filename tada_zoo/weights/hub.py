"""The Hugging Face Hub side of tada-zoo: config.json, model cards, safetensors, push and load.

A Hub repo ``tada-zoo/<arch>.<tag>`` holds ``model.safetensors`` (our state dict, never a
pickle), ``config.json`` in timm's hub format (so ``timm.create_model("hf-hub:...")``
works) and ``README.md``, the model card rendered here from the model's pretrained cfg.
``hub_configs/<arch>.<tag>/`` keeps the config and card of every released checkpoint in
the repository (``conversion/make_hub_configs.py``); the converter writes the same two
files next to the weights with the real sha256s filled in.
"""
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

import timm
import torch
import torch.nn as nn
from timm.models import PretrainedCfg, get_pretrained_cfg
from timm.models._hub import save_config_for_hf

from tada_zoo._files import dir_mode, file_mode, write_text
from tada_zoo.data.protocol import protocol_from_cfg
from tada_zoo.models._builder import (WEIGHTS_NAME, WeightsNotAvailableError, build_video_model, create_video_model,
                              how_to_convert, registered_cfg, released_models)
from tada_zoo.models._cfg import HUB_ORG, PAPERS, VideoPretrainedCfg
from tada_zoo.models._helpers import family
from tada_zoo.deploy.profile import count_gmacs, count_params, default_input_shape

__all__ = [
    "VIDEO_TASK", "WEIGHTS_NAME", "WeightsNotAvailableError", "build_video_model", "released_models", "hub_models",
    "model_stats", "hub_config", "render_model_card", "write_hub_files", "save_converted", "push_folder",
    "sha256_file", "registered_cfg", "repo_id", "how_to_convert",
]

VIDEO_TASK = "video-classification"  # the Hub pipeline tag (timm's default would say image-classification)
PROFILE_SIZE = 224  # spatial size of the params / GFLOPs in the cards (the papers' convention)

# video facts of VideoPretrainedCfg that timm's PretrainedCfg does not know: they go to a
# top-level "video" entry of config.json, where timm's hub loader leaves them alone
_TIMM_FIELDS = {f.name for f in dataclasses.fields(PretrainedCfg)}
VIDEO_FIELDS = [f.name for f in dataclasses.fields(VideoPretrainedCfg)
                if f.name not in _TIMM_FIELDS and f.name != "published"]

_DATASETS = {  # cfg.dataset -> (display name, Hub dataset tag)
    "kinetics400": ("Kinetics-400", "kinetics-400"),
    "kinetics700": ("Kinetics-700", "kinetics-700"),
    "ssv2": ("Something-Something V2", "something-something-v2"),
    "ek100": ("EPIC-KITCHENS-100", "epic-kitchens-100"),
    "imagenet-1k": ("ImageNet-1k", "imagenet-1k"),
}

_LICENSE_NAMES = {
    "apache-2.0": "Apache-2.0", "mit": "MIT", "bsd-3-clause": "BSD-3-Clause",
    "cc-by-nc-4.0": "CC-BY-NC-4.0",
}


# ---- names ----------------------------------------------------------------------------

def hub_models() -> List[str]:
    """``arch.tag`` of every registered model with a tada-zoo Hub repo: the released conversions
    and the weights we build ourselves (``.in1k_inflated``); ``hub_configs/`` has one folder each."""
    names = []
    for name in timm.list_pretrained():
        cfg = get_pretrained_cfg(name)
        if isinstance(cfg, VideoPretrainedCfg) and "." in name and (cfg.hf_hub_id or "").startswith(f"{HUB_ORG}/"):
            names.append(name)
    return sorted(names)


def repo_id(name: str) -> str:
    """Hub repo of ``arch.tag`` (its cfg's ``hf_hub_id``; ``tada-zoo/<arch>.<tag>`` by default)."""
    hub_id = registered_cfg(name).hf_hub_id
    return hub_id if hub_id and not hub_id.endswith("/") else f"{HUB_ORG}/{name}"


# ---- params / GFLOPs ----------------------------------------------------------------

@contextlib.contextmanager
def _params_on_meta() -> Iterator[None]:
    """Create parameters and buffers on the meta device (no memory, no init cost); other
    tensors made during ``__init__`` stay real, so code like ``linspace(...).tolist()`` works."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def param(module, name, p):
        if p is not None:
            p = nn.Parameter(p.to("meta"), requires_grad=p.requires_grad)
        register_parameter(module, name, p)

    def buffer(module, name, b, persistent=True):
        register_buffer(module, name, None if b is None else b.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = param, buffer
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer


def empty_model(name: str, **kwargs) -> nn.Module:
    """The model without weights (meta tensors): enough for configs, params and FLOPs."""
    with _params_on_meta():
        return create_video_model(name, **kwargs).eval()


def model_stats(name: str, num_classes: Optional[int] = None) -> dict:
    """Params and GFLOPs (multiply-accumulates) of one view, as ``tada-zoo profile`` reports them:
    ``(1, 3, T, 224, 224)`` with T the frames the weights were trained on (else the model's).
    Counted on meta tensors, so even the largest model costs a fraction of a second (a model
    whose forward needs real data is counted on CPU)."""
    try:
        cfg = registered_cfg(name)
    except ValueError:  # an alias or an architecture without cfgs: the model's own defaults
        cfg = None
    num_classes = num_classes or getattr(cfg, "num_classes", None)
    kwargs = dict(num_classes=num_classes) if num_classes else {}
    return _stats(name, cfg, empty_model(name, **kwargs), kwargs)


def _stats(name: str, cfg, model: nn.Module, kwargs: dict, gflops: Optional[float] = None) -> dict:
    """``model_stats`` of an already built (empty) model; ``gflops`` given: not counted again."""
    shape = default_input_shape(model, getattr(cfg, "num_frames", None), PROFILE_SIZE)
    if gflops is not None:
        return dict(params=count_params(model), gflops=gflops, input=list(shape))
    try:
        with torch.device("meta"):
            gmacs = count_gmacs(model, shape)
    except (RuntimeError, NotImplementedError):
        model = create_video_model(name, **kwargs)
        gmacs = count_gmacs(model, shape)
    return dict(params=count_params(model), gflops=round(gmacs, 2), input=list(shape))


# ---- config.json and model card --------------------------------------------------------

def hub_config(model: nn.Module, stats: Optional[dict] = None) -> dict:
    """timm's hub ``config.json`` for ``model`` (timm.models._hub.save_config_for_hf), with the
    video facts moved from ``pretrained_cfg`` to a top-level ``"video"`` entry (timm builds a
    plain PretrainedCfg from ``pretrained_cfg`` and would reject them there)."""
    model_args = {}
    if getattr(model, "num_frames", None):
        model_args["num_frames"] = model.num_frames
    with tempfile.TemporaryDirectory() as tmp:
        save_config_for_hf(model, Path(tmp) / "config.json", model_args=model_args)
        config = json.loads((Path(tmp) / "config.json").read_text())
    pretrained_cfg = config["pretrained_cfg"]
    pretrained_cfg.pop("published", None)
    video = {k: pretrained_cfg.pop(k) for k in VIDEO_FIELDS if k in pretrained_cfg}
    if video:
        config["video"] = video
    if stats:
        config["profile"] = dict(stats)
    return config


def _fmt_clip(cfg) -> Tuple[str, str]:
    """(frames x sampling, clips x crops) as the original model zoo states them."""
    if cfg.sampling == "interval" and cfg.frame_interval:
        clip = f"{cfg.num_frames} frames x sampling rate {cfg.frame_interval}"
    elif cfg.sampling == "segment":
        clip = f"{cfg.num_frames} frames, one per segment of the video (TSN sampling)"
    else:
        clip = f"{cfg.num_frames} frames"
    views = f"{cfg.eval_clips} clips x {cfg.eval_crops} crops" if cfg.eval_clips and cfg.eval_crops else "see the paper"
    return clip, views


def render_model_card(name: str, stats: dict, provenance: Optional[dict] = None) -> str:
    """The Hub README of ``arch.tag``. ``provenance`` (file names and sha256s) is known only
    after a conversion; without it the card says where those figures come from."""
    cfg = registered_cfg(name)
    if not cfg.original_file:
        return _inflated_card(name, stats, cfg)
    arch = name.split(".")[0]
    dataset, dataset_tag = _DATASETS.get(cfg.dataset, (cfg.dataset or "unknown", None))
    lic = cfg.license or "apache-2.0"
    front = ["---", "tags:", f"- {VIDEO_TASK}", "- timm", "- tada-zoo", "- video",
             "library_name: timm", f"pipeline_tag: {VIDEO_TASK}", f"license: {lic}"]
    if dataset_tag:
        front += ["datasets:", f"- {dataset_tag}"]
    front.append("---")
    citation = PAPERS.get(cfg.paper_ids)
    init_lic = _LICENSE_NAMES.get(cfg.init_license, cfg.init_license or "unknown")
    t, h, w = stats["input"][2:]
    clip, views = _fmt_clip(cfg)
    protocol = protocol_from_cfg(cfg)
    mean = ", ".join(f"{v:g}" for v in cfg.mean)
    std = ", ".join(f"{v:g}" for v in cfg.std)
    acc = (f"top-1 {cfg.top1:.1f} %, top-5 {cfg.top5:.1f} %" if cfg.top5 is not None
           else f"top-1 {cfg.top1:.1f} %") if cfg.top1 is not None else "not reported"
    lines = front + [
        f"# {name}",
        "",
        f"`{arch}` video classifier trained on {dataset} ({cfg.num_classes} classes) by the authors of "
        f"*{cfg.paper_name}* ({cfg.paper_ids}), converted from their original checkpoint to a timm model "
        f"with safetensors weights by tada-zoo. "
        "The converted model reproduces the original code's outputs (tested to a relative error of 1e-4).",
        "",
        "## Model details",
        "",
        f"- **Architecture:** `{arch}` (timm name; `import tada_zoo` registers it)",
        f"- **Dataset:** {dataset}, {cfg.num_classes} classes (class names are not included: the original "
        "release does not document the class-index order of its annotation lists)",
        f"- **Params (M):** {stats['params'] / 1e6:.2f}",
        f"- **GFLOPs:** {stats['gflops']:.2f} per view of {t}x{h}x{w} (multiply-accumulates, "
        f"`tada-zoo profile --model {arch}`)",
        f"- **Clip:** {clip}",
        f"- **Accuracy (original model zoo, not re-evaluated here):** {acc}, {views} per video",
        f"- **Initialised from:** {cfg.init} (licence: {init_lic})",
        "- **Original code and weights:** https://github.com/alibaba-mmai-research/TAdaConv",
        "",
        "## Licence",
        "",
        f"{_LICENSE_NAMES.get(lic, lic)}, the licence of the original TAdaConv code base that released these "
        f"weights. Before training on {dataset} they were initialised from {cfg.init}, released under "
        f"{init_lic}. The {dataset} videos keep their own terms of use.",
        "",
        "## Preprocessing",
        "",
        f"Input `(B, 3, T, H, W)` float clips of T = {cfg.num_frames} RGB frames in [0, 1], normalised with "
        f"mean ({mean}) and std ({std}). The original code's pipeline, which `tada-zoo evaluate --model {name}` "
        "and `tada-zoo train` reproduce (interval windows are measured at 30 fps whatever the file's rate):",
        "",
        f"- **Evaluation:** {protocol.describe()}; the softmax scores of all views are averaged",
        f"- **Training augmentation:** {protocol.describe(train=True)}",
        "",
        "## Usage",
        "",
        "```python",
        "import timm, torch",
        "import tada_zoo  # registers the tada-zoo models with timm",
        "",
        f'model = timm.create_model("{name}", pretrained=True).eval()',
        f'# or: timm.create_model("hf-hub:{repo_id(name)}", pretrained=True)',
        f"clip = torch.randn(1, 3, {cfg.num_frames}, {cfg.input_size[1]}, {cfg.input_size[2]})  "
        "# (B, C, T, H, W), normalised",
        "with torch.no_grad():",
        f"    probs = model(clip).softmax(-1)  # (1, {cfg.num_classes})",
        "",
        "# fine-tune on your own classes: the classifier is re-initialised",
        f'model = timm.create_model("{name}", pretrained=True, num_classes=10)',
        "```",
        "",
        "## Provenance",
        "",
    ]
    original = cfg.original_file
    if provenance:
        lines += [
            f"- **Original checkpoint:** `{provenance['source_file']}` ({cfg.original_url or 'see the original model zoo'})",
            f"- **sha256 (original):** `{provenance['source_sha256']}`",
            f"- **sha256 (`{WEIGHTS_NAME}`):** `{provenance['converted_sha256']}`",
            f"- **State dict:** `{provenance['state_key']}` of the original file, converted by "
            f"`tada-zoo convert` ({provenance['converter']})",
        ]
    else:
        lines += [
            f"- **Original checkpoint:** `{original}` ({cfg.original_url or 'see the original model zoo'})",
            f"- **sha256 of the original and converted files:** in the README.md that `tada-zoo convert --model "
            f"{name} --checkpoint {original} --output DIR` writes next to `DIR/{WEIGHTS_NAME}` (the copy "
            f"published in the Hub repo {repo_id(name)}).",
        ]
    if citation:
        lines += ["", "## Citation", "", "```bibtex", citation, "```"]
    return "\n".join(lines) + "\n"


def _inflated_card(name: str, stats: dict, cfg) -> str:
    """The Hub README of weights we build from 2D ImageNet weights (no original video checkpoint)."""
    arch = name.split(".")[0]
    lic = cfg.license or "apache-2.0"
    init_lic = _LICENSE_NAMES.get(cfg.init_license, cfg.init_license or "unknown")
    t, h, w = stats["input"][2:]
    clip, _ = _fmt_clip(cfg)
    mean = ", ".join(f"{v:g}" for v in cfg.mean)
    std = ", ".join(f"{v:g}" for v in cfg.std)
    citation = PAPERS.get(cfg.paper_ids)
    lines = [
        "---", "tags:", f"- {VIDEO_TASK}", "- timm", "- tada-zoo", "- video", "library_name: timm",
        f"pipeline_tag: {VIDEO_TASK}", f"license: {lic}", "datasets:", "- imagenet-1k", "---",
        f"# {name}", "",
        f"`{arch}` of *{cfg.paper_name}* ({cfg.paper_ids}) initialised from ImageNet-1k weights. "
        "**Not trained on video**: the original video weights of this model were never released, so these "
        f"are the paper's starting point, {cfg.init}. Fine-tune them on your videos.", "",
        *[f"{note}" + "\n" for note in (cfg.notes or ())],
        "## Model details", "",
        f"- **Architecture:** `{arch}` (timm name; `import tada_zoo` registers it)",
        f"- **Classifier:** the {cfg.num_classes} ImageNet-1k classes of the 2D source (replace it: "
        "`num_classes=N`)",
        f"- **Params (M):** {stats['params'] / 1e6:.2f}",
        f"- **GFLOPs:** {stats['gflops']:.2f} per view of {t}x{h}x{w} (multiply-accumulates, "
        f"`tada-zoo profile --model {arch}`)",
        f"- **Clip:** {clip}",
        "- **Accuracy:** none on video (not trained on video)",
        f"- **Initialised from:** {cfg.init} (licence: {init_lic}; source: {cfg.origin_url})",
        "",
        "## Licence", "",
        f"{_LICENSE_NAMES.get(lic, lic)}: these weights are a re-arrangement of the 2D weights they come from, "
        f"{cfg.init} (released under {init_lic}; {cfg.origin_url}). The tada-zoo code that inflates them is "
        "Apache-2.0.",
        "",
        "## Preprocessing", "",
        f"Input `(B, 3, T, H, W)` float clips of RGB frames in [0, 1], normalised with mean ({mean}) and std "
        f"({std}) (ImageNet's, as for the 2D source); {cfg.input_size[1]}x{cfg.input_size[2]} crops.",
        "",
        "## Usage", "",
        "```python", "import timm", "import tada_zoo  # registers the tada-zoo models with timm", "",
        f'model = timm.create_model("{name}", pretrained=True, num_classes=10)  # then fine-tune on video',
        "```", "",
        "## Provenance", "",
        f"Inflated from {cfg.origin_url} by the {family(name).display_name(arch)} family's rule "
        "(`tada_zoo.weights.inflate.inflate`): the 2D stem kernel becomes the centre tap of the video stem, every other "
        "2D weight is copied, and the parts a 2D network lacks (calibration, temporal aggregation) start at "
        "identity, so the video model equals its 2D source applied frame by frame.",
    ]
    if citation:
        lines += ["", "## Citation", "", "```bibtex", citation, "```"]
    return "\n".join(lines) + "\n"


def write_hub_files(name: str, out_dir: Union[str, Path], gflops: Optional[float] = None) -> Dict[str, str]:
    """``config.json`` + ``README.md`` of ``arch.tag`` from the registry (no weights needed);
    returns their text (what ``hub_configs/<name>/`` must contain). ``gflops``: a known count
    (counting is the slow part), else counted."""
    cfg = registered_cfg(name)
    model = empty_model(name, num_classes=cfg.num_classes)
    stats = _stats(name, cfg, model, dict(num_classes=cfg.num_classes), gflops)
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

    output = check_output_dir(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.tmp-"))
    try:
        # own copies: safetensors refuses tensors that share memory (views, tied weights)
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        save_file(state, tmp / WEIGHTS_NAME, metadata={"format": "pt", "model": name})
        provenance = dict(provenance, converted_sha256=sha256_file(tmp / WEIGHTS_NAME))
        stats = model_stats(name, num_classes=model.num_classes)
        config = hub_config(model, stats)
        config["provenance"] = provenance
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        tagged = "." in name
        card = render_model_card(name, stats, provenance) if tagged else _untagged_card(name, stats, provenance)
        (tmp / "README.md").write_text(card)
        os.chmod(tmp, dir_mode())  # mkdtemp / safetensors make private files: give the usual permissions
        for f in tmp.iterdir():
            os.chmod(f, file_mode())
        check_output_dir(output)  # still free?
        if output.exists():
            output.rmdir()  # empty directory: replaced by the finished one
        os.replace(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output


def _untagged_card(name: str, stats: dict, provenance: dict) -> str:
    """Minimal card for an architecture converted without a released tag (e.g. own training)."""
    return "\n".join([
        "---", "tags:", f"- {VIDEO_TASK}", "- timm", "- tada-zoo", "library_name: timm",
        f"pipeline_tag: {VIDEO_TASK}", "---", f"# {name}", "",
        f"`{name}` converted from an original TAdaConv checkpoint by `tada-zoo convert`.", "",
        f"- **Params (M):** {stats['params'] / 1e6:.2f}",
        f"- **GFLOPs:** {stats['gflops']:.2f} per view of {'x'.join(map(str, stats['input'][2:]))}",
        f"- **Original checkpoint:** `{provenance['source_file']}`, sha256 `{provenance['source_sha256']}`",
        f"- **sha256 (`{WEIGHTS_NAME}`):** `{provenance['converted_sha256']}`", "",
        "```python", "import timm, tada_zoo", "",
        "model = timm.create_model(\"local-dir:PATH/TO/THIS/FOLDER\", pretrained=True)", "```", ""])


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
    api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message=commit_message,
                      allow_patterns=[WEIGHTS_NAME, "config.json", "README.md"])
    return repo
