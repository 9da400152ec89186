"""Model cards of the Hub repos: a converted release, weights inflated from 2D ImageNet
weights, and an architecture converted without a tag. Rendered from the pretrained cfg (the
registry is the one source); ``hub_configs/`` holds every card, kept in sync by a test."""
import json
from typing import List, Optional, Tuple

from tada_zoo.data.protocol import protocol_from_cfg
from tada_zoo.models import WEIGHTS_NAME, family, registered_cfg, repo_id
from tada_zoo.models._cfg import PAPERS

__all__ = ["VIDEO_TASK", "render_model_card", "untagged_card", "run_card"]

VIDEO_TASK = "video-classification"  # the Hub pipeline tag (timm's default would say image-classification)

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
    dataset, dataset_tag = _DATASETS.get(cfg.dataset, (cfg.dataset or "unknown", None))
    lic = cfg.license or "apache-2.0"
    front = ["---", "tags:", f"- {VIDEO_TASK}", "- timm", "- tada-zoo", "- video",
             "library_name: timm", f"pipeline_tag: {VIDEO_TASK}", f"license: {lic}"]
    if dataset_tag:
        front += ["datasets:", f"- {dataset_tag}"]
    front.append("---")
    lines = (front + _card_details(name, cfg, stats, dataset) + _card_use(name, cfg, dataset, lic)
             + _card_provenance(name, cfg, provenance))
    citation = PAPERS.get(cfg.paper_ids)
    if citation:
        lines += ["", "## Citation", "", "```bibtex", citation, "```"]
    return "\n".join(lines) + "\n"


def _card_details(name: str, cfg, stats: dict, dataset: str) -> List[str]:
    """Title, summary and the model's facts (params, GFLOPs, clip, reported accuracy, init)."""
    arch = name.split(".")[0]
    init_lic = _LICENSE_NAMES.get(cfg.init_license, cfg.init_license or "unknown")
    t, h, w = stats["input"][2:]
    clip, views = _fmt_clip(cfg)
    acc = (f"top-1 {cfg.top1:.1f} %, top-5 {cfg.top5:.1f} %" if cfg.top5 is not None
           else f"top-1 {cfg.top1:.1f} %") if cfg.top1 is not None else "not reported"
    return [
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
    ]


def _card_use(name: str, cfg, dataset: str, lic: str) -> List[str]:
    """Licence, preprocessing (the original's pipeline) and usage."""
    init_lic = _LICENSE_NAMES.get(cfg.init_license, cfg.init_license or "unknown")
    protocol = protocol_from_cfg(cfg)
    mean = ", ".join(f"{v:g}" for v in cfg.mean)
    std = ", ".join(f"{v:g}" for v in cfg.std)
    return [
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
    ]


def _card_provenance(name: str, cfg, provenance: Optional[dict]) -> List[str]:
    """Where the weights came from: the original file and, after a conversion, both sha256s."""
    lines = [
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
    return lines


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


def untagged_card(name: str, stats: dict, provenance: dict) -> str:
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


# ---- a fine-tuned run (tada-zoo push) ------------------------------------------------------

def run_card(config: dict, protocol) -> str:
    """The Hub README of a model fine-tuned with ``tada-zoo train`` (``weights.publish``): the HF
    metadata block (``huggingface_hub.ModelCardData``, with a ``model-index`` when the weights were
    evaluated), what it is and was trained on, its protocol, usage, the base model and the citation,
    all from the ``config.json`` written next to it."""
    from huggingface_hub import ModelCardData

    facts, arch = config["provenance"], config["architecture"]
    name = facts.get("repo") or config["pretrained_cfg"].get("hf_hub_id") or arch
    data = ModelCardData(
        library_name="timm", pipeline_tag=VIDEO_TASK, tags=[VIDEO_TASK, "timm", "tada-zoo", "video"],
        license=config["pretrained_cfg"].get("license") or "apache-2.0", base_model=facts.get("base_model"),
        model_name=name, eval_results=_eval_results(facts))
    lines = ["---", data.to_yaml(), "---"] + _run_details(config, name) + _run_use(config, protocol, name)
    citation = PAPERS.get(config["pretrained_cfg"].get("paper_ids"))
    if citation:
        lines += ["", "## Citation", "", "The architecture's paper:", "", "```bibtex", citation, "```"]
    return "\n".join(lines) + "\n"


def _eval_results(facts: dict):
    from huggingface_hub import EvalResult

    ev = facts.get("evaluation")
    if not ev:
        return None
    common = dict(task_type=VIDEO_TASK, task_name="Video Classification", dataset_type=facts["dataset"],
                  dataset_name=facts["dataset"], dataset_split="evaluation")
    results = [EvalResult(metric_type="accuracy", metric_name="Top-1 accuracy", metric_value=ev["top1"], **common)]
    if ev.get("top5") is not None:
        results.append(EvalResult(metric_type="top-5-accuracy", metric_name="Top-5 accuracy",
                                  metric_value=ev["top5"], **common))
    return results


def _run_details(config: dict, name: str) -> List[str]:
    """What the model is, what it started from, what it saw, and how well it does."""
    facts, arch = config["provenance"], config["architecture"]
    classes, data = facts.get("classes"), facts.get("training_data") or {}
    base = facts.get("base_model")
    start = (f"the weights of [`{facts['init']}`](https://huggingface.co/{base})" if base
             else "random weights" if facts["init"] == "random" else facts["init"])
    shown = ", ".join(f"`{c}`" for c in classes[:20]) + (f" and {len(classes) - 20} more" if len(classes) > 20 else "") \
        if classes else "no names stored (class indices only)"
    summary = facts.get("run_summary") or {}
    lines = [f"# {name}", "",
             f"`{arch}` video classifier fine-tuned on **{facts['dataset']}** ({facts['num_classes']} classes) with "
             f"tada-zoo, starting from {start}.", "",
             "## Model details", "",
             f"- **Architecture:** `{arch}` (timm name; `import tada_zoo` registers it), arguments "
             f"`{json.dumps(config.get('model_args', {}))}`",
             f"- **Classes ({facts['num_classes']}):** {shown}",
             f"- **Started from:** {start}",
             f"- **Training data:** {facts['dataset']}: {data.get('train_videos', '?')} training and "
             f"{data.get('val_videos', '?')} validation videos",
             f"- **Training clips:** {data.get('training', 'not recorded')}"]
    if summary.get("epochs"):
        best = summary.get("best") or {}
        lines.append(f"- **Training:** {summary['epochs']} epoch{'s' * (summary['epochs'] != 1)}" + (
            f", best validation top-1 {best['top1']:.2f} % at epoch {best['epoch']} ({data.get('validation')})"
            if best.get("epoch") else ""))
    lines += ["", "## Evaluation", ""] + _evaluation_lines(facts) + [""]
    return lines


def _evaluation_lines(facts: dict) -> List[str]:
    ev = facts.get("evaluation")
    if not ev:
        return ["Not evaluated with `tada-zoo evaluate` (no `metrics.json` of these weights was found in the run "
                "folder): no accuracy is claimed."]
    top5 = f", top-5 {ev['top5']:.2f} %" if ev.get("top5") is not None else ""
    return [f"`tada-zoo evaluate` of these exact weights (sha256 `{facts['source_sha256'][:16]}...`) on "
            f"{ev.get('videos', '?')} videos of {facts['dataset']}: **top-1 {ev['top1']:.2f} %**{top5}, "
            f"mean class accuracy {ev.get('mean_class_acc', float('nan')):.2f} %; views: {ev.get('protocol')}."]


def _run_use(config: dict, protocol, name: str) -> List[str]:
    """How to feed and load it; provenance."""
    facts = config["provenance"]
    mean = ", ".join(f"{v:g}" for v in protocol.mean)
    std = ", ".join(f"{v:g}" for v in protocol.std)
    hub = f"hf-hub:{name}" if "/" in name else "local-dir:PATH/TO/THIS/FOLDER"
    return [
        "## Preprocessing", "",
        f"Input `(B, 3, T, H, W)` float clips of T = {protocol.num_frames} RGB frames in [0, 1], normalised with "
        f"mean ({mean}) and std ({std}). `tada_zoo.data.resolve_data_config(model)` gives this pipeline, which "
        "`tada-zoo predict` and `tada-zoo evaluate` apply:", "",
        f"- **Test views:** {protocol.describe()}; the softmax scores of all views are averaged",
        f"- **Training augmentation:** {protocol.describe(train=True)}", "",
        "## Usage", "",
        "```python", "import timm, torch", "import tada_zoo  # registers the tada-zoo models with timm", "",
        f'model = timm.create_model("{hub}", pretrained=True).eval()',
        'classes = model.pretrained_cfg["label_names"]',
        "```", "",
        "```bash", f"tada-zoo predict VIDEO.mp4 --model {hub}", "```", "",
        "## Provenance", "",
        f"- **Weights:** `{facts['source_file']}` of a `tada-zoo train` run, sha256 `{facts['source_sha256']}`",
        f"- **Written by:** {facts['written_by']} (`tada-zoo push`)",
    ]
