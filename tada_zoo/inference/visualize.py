"""What a video model looks at, and how TAdaConv calibrates it: Grad-CAM over the frames of a
clip and the calibration weights ``alpha_t`` of TAdaConv layers over time.

Grad-CAM (Selvaraju et al. 2017; the paper's Fig. 4 shows it for the last stage): the
gradient of one class score (pre-softmax logit, default the top-1 prediction) with respect to
a feature level's ``(C, T', H', W')`` map; each channel's weight is the mean of its gradient
over time AND space (one weight per channel for the whole clip, so frames are compared on one
scale); ``CAM = ReLU(sum_c w_c A_c)``, upsampled (trilinear) to the input's ``(T, H, W)`` and
divided by its maximum over the clip (values in [0, 1]; all zero when nothing is positive).

Levels are those of ``model.feature_info`` (``forward_intermediates``): an index or the level's
module name (``stages.3``, ``layer4``, ``blocks.10``, ``fast.layer4``); the default is the last
one (SlowFast: the fast pathway's, TAdaFormer: the last but one block, as the last block's
patch tokens do not reach its class-token head). The clip runs through
the family's own level hooks (``models._base.VideoModelMixin``), so the map is the level's
output in the graph that makes the logits, turned into ``(B, C, T', H', W')`` (TAdaFormer's
tokens without the class token) by the same re-layout ``forward_intermediates`` uses.

``alpha_t`` is what a TAdaConv multiplies into its weights: recorded from the argument of its
``forward`` / ``forward_frames`` during that same forward pass; where a model computes the
calibrated convolution functionally with the TAdaConv's weight (the R3D / SlowFast TAda blocks),
from the output of its route function ``<name>_rf``.
"""
import fnmatch
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tada_zoo._files import atomic_write, write_text
from tada_zoo.data import open_video
from tada_zoo.data.protocol import DataProtocol
from tada_zoo.data.sampling import interval_indices, segment_indices
from tada_zoo.layers import TAdaConv2d, TAdaConv3d

__all__ = ["load_clip", "to_uint8_frames", "tada_layer_names", "select_tada_layers", "record_alpha",
           "feature_level", "grad_cam", "explain_clip", "visualize_video"]


def load_clip(path, protocol: DataProtocol):
    """The first test view of a video under ``protocol`` (centre clip, centre crop): the
    normalised clip ``(C, T, H, W)`` and the file's frame indices."""
    with open_video(path) as reader:
        n = len(reader)
        if protocol.sampling == "segment":
            idx = segment_indices(n, protocol.num_frames, random=False)
        else:
            idx = interval_indices(n, protocol.num_frames, protocol.frame_interval, clip_index=0, num_clips=1,
                                   video_fps=reader.fps, target_fps=protocol.target_fps)
        frames = reader.frames_at(idx)
    return protocol.eval_transform(crops=1)(frames)[0], np.asarray(idx)


def to_uint8_frames(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised clip ``(C, T, H, W)`` back to ``(T, H, W, C)`` uint8 frames (mean / std in [0, 1] units)."""
    c = clip.detach().float().cpu()
    m, s = torch.tensor(mean).view(-1, 1, 1, 1), torch.tensor(std).view(-1, 1, 1, 1)
    return ((c * s + m).clamp(0, 1) * 255).round().byte().permute(1, 2, 3, 0).numpy()


# --- alpha_t of TAdaConv layers ---------------------------------------------------------------

def tada_layer_names(model: nn.Module) -> List[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (TAdaConv2d, TAdaConv3d))]


def select_tada_layers(model: nn.Module, patterns: Union[str, Sequence[str]] = "*") -> List[str]:
    """TAdaConv module names matching any of ``patterns`` (fnmatch; a string may list several,
    comma-separated), in model order. ValueError when the model has none or none match."""
    names = tada_layer_names(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no TAdaConv layers, so it has no calibration weights "
                         "alpha_t to plot (a TSN / R3D / SlowFast baseline?); use a TAda model, or leave "
                         "alpha out (--alpha-layers none)")
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",") if p.strip()]
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
        raise ValueError(f"no TAdaConv layer matches {','.join(patterns)!r}; the model's are: {shown}")
    return chosen


def _alpha_ct(alpha, frame_major: bool, frames_last: bool = False) -> torch.Tensor:
    """First clip's alpha as ``(C, T)``: from ``(B, C, T, 1, 1)``, ``(B, T, C, 1, 1)`` if frame-major,
    or ``(B, T, 1, 1, C)`` if frames-last (a route function called with ``frames_last=True``)."""
    a = (alpha[0] if isinstance(alpha, (list, tuple)) else alpha).detach()[0].float()
    if frames_last:
        a = a.permute(3, 0, 1, 2)
    elif frame_major:
        a = a.transpose(0, 1)
    return a.reshape(a.shape[0], a.shape[1], -1).mean(-1).cpu()


@contextmanager
def record_alpha(model: nn.Module, names: Sequence[str]):
    """Record ``alpha_t`` ``(C, T)`` (first clip of the batch) of the named TAdaConv layers while
    the block runs; yields a dict filled by the forward pass. Instance attributes wrap the layers'
    ``forward`` / ``forward_frames`` (models call either) and are removed afterwards."""
    modules = dict(model.named_modules())
    out: Dict[str, torch.Tensor] = {}
    fallback: Dict[str, torch.Tensor] = {}
    patched, handles = [], []

    def wrap(name, fn, frame_major, depth):
        def recording(x, alpha, *args, **kwargs):
            if depth[0] == 0 and name not in out:  # the outer call (forward calls forward_frames or back)
                out[name] = _alpha_ct(alpha, frame_major)
            depth[0] += 1
            try:
                return fn(x, alpha, *args, **kwargs)
            finally:
                depth[0] -= 1
        return recording

    for name in names:
        conv = modules.get(name)
        if not isinstance(conv, (TAdaConv2d, TAdaConv3d)):
            raise ValueError(f"{name!r} is not a TAdaConv layer of the model")
        depth = [0]
        for attr, frame_major in (("forward", False), ("forward_frames", True)):
            conv.__dict__[attr] = wrap(name, getattr(conv, attr), frame_major, depth)
            patched.append((conv, attr))
        rf = modules.get(f"{name}_rf")
        if rf is not None:
            def hook(module, args, kwargs, output, name=name):  # returns None: the output stays as it is
                fallback.setdefault(name, _alpha_ct(output, False, frames_last=kwargs.get("frames_last", False)))
            handles.append(rf.register_forward_hook(hook, with_kwargs=True))
    try:
        yield out
        for name in names:
            if name not in out and name in fallback:
                out[name] = fallback[name]
        missing = [n for n in names if n not in out]
        if missing:
            raise RuntimeError(f"TAdaConv layers {missing} did not run in the forward pass (pruned, or "
                               "called in a way that bypasses both the layer and its route function)")
        order = {n: i for i, n in enumerate(names)}
        for name in sorted(out, key=order.get):  # model order
            out[name] = out.pop(name)
    finally:
        for conv, attr in patched:
            conv.__dict__.pop(attr, None)
        for h in handles:
            h.remove()


# --- Grad-CAM -----------------------------------------------------------------------------------

def _check_video_model(model: nn.Module) -> None:
    if not all(hasattr(model, a) for a in ("_embed", "_run_level", "_level_maps", "feature_info")):
        raise ValueError(f"{type(model).__name__} is not a tada-zoo video model (no feature levels); "
                         "Grad-CAM here walks tada-zoo's feature levels")


def feature_level(model: nn.Module, layer: Union[int, str, None] = None) -> int:
    """Index into ``model.feature_info`` of ``layer``: an index (negative from the end), a
    level's module name, or ``None`` for the last level (the last but one under class-token
    pooling, TAdaFormer's, where the last block's patch tokens do not reach the logits)."""
    _check_video_model(model)
    info = model.feature_info
    modules = [f["module"] for f in info]
    if layer is None:  # the last level; with class-token pooling the last block's patch tokens reach no logit
        return len(info) - (2 if getattr(model, "global_pool", None) == "token" and len(info) > 1 else 1)
    if isinstance(layer, str) and layer.lstrip("-").isdigit():
        layer = int(layer)
    if isinstance(layer, int):
        if not -len(info) <= layer < len(info):
            raise ValueError(f"layer index {layer} out of range: the model has {len(info)} feature levels "
                             f"({', '.join(modules)})")
        return layer % len(info)
    if layer not in modules:
        raise ValueError(f"{layer!r} is not a feature level of {type(model).__name__}; choose one of "
                         f"{', '.join(modules)} (or an index)")
    return modules.index(layer)


def _map_tensors(h, fn):
    """``fn`` on every tensor of a level state (a tensor, or a tuple / list holding tensors)."""
    if torch.is_tensor(h):
        return fn(h)
    if isinstance(h, (tuple, list)):
        return type(h)(_map_tensors(v, fn) for v in h)
    return h


def _tensors(h) -> List[torch.Tensor]:
    found = []
    _map_tensors(h, lambda t: found.append(t) or t)
    return found


def _or_zeros(grad: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if grad is None else grad


def _watch(t: torch.Tensor) -> torch.Tensor:
    return t if t.requires_grad else t.requires_grad_()  # a graph even with frozen weights


def grad_cam(model: nn.Module, clip: torch.Tensor, class_index: Optional[int] = None,
             layer: Union[int, str, None] = None, alpha_layers: Sequence[str] = ()) -> dict:
    """Grad-CAM of one clip ``(C, T, H, W)`` (or ``(1, C, T, H, W)``) for ``class_index``
    (default: the top-1 prediction) on the feature level ``layer`` (module docstring).

    Returns numpy values: ``cam`` ``(T, H, W)`` in [0, 1], ``cam_lowres`` ``(T', H', W')``
    (before upsampling and normalisation), ``channel_weights`` ``(C,)``, ``logits``, ``probs``,
    ``class_index``, ``level`` and ``layer`` (its module name); and ``alpha``: ``(C, T)`` per
    name of ``alpha_layers`` (``record_alpha``), from the same forward pass.
    """
    level_index = feature_level(model, layer)
    x = clip if clip.dim() == 5 else clip.unsqueeze(0)
    if x.dim() != 5 or x.shape[0] != 1:
        raise ValueError(f"grad_cam takes one clip (C, T, H, W), got shape {tuple(clip.shape)}")
    device = next(model.parameters()).device
    x = x.to(device)
    level, j = divmod(level_index, model.maps_per_level)
    level -= int(model.stem_is_level)  # -1: the stem
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), record_alpha(model, alpha_layers) as alpha:
            h = model._embed(x)
            captured = h = _map_tensors(h, _watch) if level == -1 else h
            for i in range(model._num_levels()):
                h = model._run_level(i, h)
                if i == level:
                    captured = h = _map_tensors(h, _watch)
            if level >= model._num_levels():
                raise ValueError(f"feature level {level_index} was pruned from the model")
            logits = model.forward_head(model._output(h))[0].float()
            k = int(logits.argmax()) if class_index is None else int(class_index)
            if not 0 <= k < logits.numel():
                raise ValueError(f"class {class_index} out of range: the model has {logits.numel()} outputs")
            leaves = _tensors(captured)
            grads = iter(torch.autograd.grad(logits[k], leaves, allow_unused=True))
            grad_state = _map_tensors(captured, lambda t: _or_zeros(next(grads), t))
    finally:
        model.train(was_training)
    with torch.no_grad():
        fmap = model._level_maps(captured, False)[j][0].float()  # (C, T', H', W')
        fgrad = model._level_maps(grad_state, False)[j][0].float()  # the same re-layout of the gradient
        if not fgrad.any():
            raise ValueError(f"class {k}'s score does not depend on the map of level {model.feature_info[level_index]['module']} "
                             "(its gradient is zero, e.g. a transformer's last-block patch tokens under class-token "
                             "pooling); choose an earlier level")
        weights = fgrad.mean((1, 2, 3))
        low = F.relu((weights[:, None, None, None] * fmap).sum(0))
        cam = F.interpolate(low[None, None], size=tuple(x.shape[2:]), mode="trilinear", align_corners=False)[0, 0]
        cam = cam.clamp_min(0)
        peak = cam.max()
        cam = cam / peak if peak > 0 else torch.zeros_like(cam)
    return dict(cam=cam.cpu().numpy().astype(np.float32), cam_lowres=low.cpu().numpy().astype(np.float32),
                channel_weights=weights.cpu().numpy().astype(np.float32),
                logits=logits.detach().cpu().numpy(), probs=logits.detach().softmax(0).cpu().numpy(),
                class_index=k, level=level_index, layer=model.feature_info[level_index]["module"],
                alpha={n: a.numpy() for n, a in alpha.items()})


def explain_clip(model: nn.Module, clip: torch.Tensor, class_index: Optional[int] = None,
                 layer: Union[int, str, None] = None, alpha_layers: Union[str, Sequence[str], None] = None) -> dict:
    """``grad_cam`` with ``alpha_layers`` given as patterns (``select_tada_layers``); ``None``:
    every TAdaConv layer if the model has any, else none (``"none"`` / ``[]``: none)."""
    if alpha_layers is None:
        names = tada_layer_names(model)
    elif alpha_layers in ("none", "") or (not isinstance(alpha_layers, str) and not alpha_layers):
        names = []
    else:
        names = select_tada_layers(model, alpha_layers)
    return grad_cam(model, clip, class_index, layer, names)


def _atomic_npz(path, arrays: Dict[str, np.ndarray]) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the temp name
            np.savez_compressed(f, **arrays)
    atomic_write(path, write)


def visualize_video(model: nn.Module, video, output, protocol: DataProtocol, class_index: Optional[int] = None,
                    layer: Union[int, str, None] = None, alpha_layers: Union[str, Sequence[str], None] = None,
                    class_names: Optional[Sequence[str]] = None, gif_fps: float = 4.0) -> dict:
    """Grad-CAM and alpha_t of the first test view of ``video`` (``load_clip``), written to
    ``output``: ``gradcam.png`` (frames over their overlays), ``gradcam.gif``, ``alpha.png``
    (when there are alpha layers), ``values.npz`` (the arrays behind the pictures) and
    ``summary.json``. Returns the summary."""
    from tada_zoo import plots

    plots.require_matplotlib()  # before any work
    clip, frame_idx = load_clip(video, protocol)
    r = explain_clip(model, clip, class_index, layer, alpha_layers)
    frames = to_uint8_frames(clip, protocol.mean, protocol.std)
    overlays = plots.overlay_cam(frames, r["cam"])
    out = Path(output)
    k = r["class_index"]
    label = f"{k} ({class_names[k]})" if class_names is not None and k < len(class_names) else str(k)
    title = f"{Path(video).name}: Grad-CAM of class {label}, p={r['probs'][k]:.3f}, level {r['layer']}"
    written = [plots.plot_cam_strip(frames, overlays, out / "gradcam.png", title,
                                    [f"frame {i}" for i in frame_idx]),
               plots.save_cam_gif(frames, overlays, out / "gradcam.gif", fps=gif_fps)]
    if r["alpha"]:
        written.append(plots.plot_alpha(r["alpha"], out / "alpha.png", title=f"{Path(video).name}: calibration "
                                        f"weights alpha_t (class {label})"))
    arrays = dict(frames=frames, frame_indices=frame_idx, cam=r["cam"], cam_lowres=r["cam_lowres"],
                  overlays=overlays, channel_weights=r["channel_weights"], logits=r["logits"], probs=r["probs"])
    arrays.update({f"alpha/{n}": a for n, a in r["alpha"].items()})
    _atomic_npz(out / "values.npz", arrays)
    top = np.argsort(-r["probs"])[:5]
    summary = dict(video=str(video), class_index=k, class_name=class_names[k] if class_names is not None
                   and k < len(class_names) else None, prob=float(r["probs"][k]),
                   top5=[dict(index=int(i), prob=float(r["probs"][i])) for i in top],
                   layer=r["layer"], level=r["level"], frame_indices=frame_idx.tolist(),
                   cam_weighting="one weight per channel: gradient mean over time and space",
                   alpha_layers={n: dict(channels=a.shape[0], frames=a.shape[1], mean_over_channels=a.mean(0).tolist())
                                 for n, a in r["alpha"].items()},
                   protocol=protocol.describe(clips=1, crops=1),
                   files=[p.name for p in written] + ["values.npz", "summary.json"])
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary
