"""Pictures: training curves, confusion matrices, Grad-CAM strips and GIFs, calibration weights over time.

Every function takes plain values (numpy arrays, dicts) and writes one file atomically
(``tada_zoo._files``). matplotlib is imported inside the functions and drawn through its
``Figure`` API (Agg rendering, no pyplot state, no GUI backend switched), so the package
works without it; ``pip install 'tada-zoo[plot]'`` adds it (and Pillow, which writes the GIFs).
"""
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from ._files import atomic_write

__all__ = ["require_matplotlib", "plot_curves", "curves_figure", "confusion_matrix", "plot_confusion", "overlay_cam",
           "plot_cam_strip", "save_cam_gif", "plot_alpha", "plot_timeline"]

_INSTALL = "pip install 'tada-zoo[plot]'"
MAX_TICK_LABELS = 50  # confusion matrices with more classes get no tick labels (unreadable)


def require_matplotlib():
    """The ``matplotlib`` module, or ImportError saying how to install it."""
    try:
        import matplotlib
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as e:
        raise ImportError(f"plots need matplotlib ({e}); {_INSTALL}") from None
    return matplotlib


def _figure(**kwargs):
    require_matplotlib()
    from matplotlib.figure import Figure
    return Figure(**kwargs)


def _save(fig, path) -> Path:
    """A figure to a PNG, atomically (the temp file's suffix is not .png: say the format)."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    return Path(path)


def plot_curves(rows: Sequence[Mapping], path) -> Path:
    """``curves_figure(rows)`` as a PNG."""
    return _save(curves_figure(rows), path)


def curves_figure(rows: Sequence[Mapping]):
    """Loss and accuracy curves from ``metrics.jsonl`` rows (a matplotlib ``Figure``).

    ``type == "epoch"`` rows (``epoch`` counted from 1, ``train_loss``, ``val_top1`` / ``val_top5``)
    are drawn with markers at their epoch, so the first epoch is a visible point and not an empty
    line; ``type == "step"`` rows (``epoch``, ``step`` from 0, ``steps_per_epoch``, ``loss``), where a
    run logs them, add the per-step loss on the same axis (step s of epoch e at ``e - 1 + (s + 1) / steps``).
    """
    epochs = [r for r in rows if r.get("type", "epoch") == "epoch" and "epoch" in r]
    steps = [r for r in rows if r.get("type") == "step" and "loss" in r]
    fig = _figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    if steps:
        xs = [r["epoch"] - 1 + (r.get("step", 0) + 1) / max(r.get("steps_per_epoch", 1), 1) for r in steps]
        ax1.plot(xs, [r["loss"] for r in steps], color="0.6", lw=0.8, label="train loss (step)")
    pts = [(r["epoch"], r["train_loss"]) for r in epochs if r.get("train_loss") is not None]
    if pts:
        ax1.plot(*zip(*pts), "o-", color="tab:blue", label="train loss (epoch mean)")
    ax1.set_xlabel("epoch"), ax1.set_ylabel("loss")
    for key, color in (("val_top1", "tab:orange"), ("val_top5", "tab:green")):
        pts = [(r["epoch"], r[key]) for r in epochs if r.get(key) is not None]
        if pts:
            ax2.plot(*zip(*pts), "o-", color=color, label=key)
    ax2.set_xlabel("epoch"), ax2.set_ylabel("%")
    for ax in (ax1, ax2):
        if ax.lines:
            ax.legend()
        else:
            ax.text(0.5, 0.5, "nothing logged yet", ha="center", va="center", transform=ax.transAxes)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_matrix(predictions, labels, num_classes: int) -> np.ndarray:
    """``(K, K)`` counts: row = true class, column = predicted class."""
    p, t = np.asarray(predictions, dtype=np.int64).ravel(), np.asarray(labels, dtype=np.int64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"{p.size} predictions but {t.size} labels")
    for name, v in (("prediction", p), ("label", t)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"a {name} is outside 0..{num_classes - 1} (got {v.min()}..{v.max()})")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _row_normalise(matrix: np.ndarray) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    total = m.sum(1, keepdims=True)
    return np.divide(m, total, out=np.zeros_like(m), where=total > 0)


def plot_confusion(matrix, path, class_names: Optional[Sequence[str]] = None, title: Optional[str] = None,
                   max_labels: int = MAX_TICK_LABELS) -> Path:
    """Row-normalised confusion matrix (each true class sums to 1; a class without samples is 0);
    class names on the axes when given and at most ``max_labels``, cell values when <= 15 classes."""
    counts = np.asarray(matrix)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"a confusion matrix is square, got shape {counts.shape}")
    k = counts.shape[0]
    if class_names is not None and len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for a {k}-class confusion matrix")
    norm = _row_normalise(counts)
    side = min(max(4.0, 0.35 * k + 2), 20.0)
    fig = _figure(figsize=(side + 1, side))
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xlabel("predicted class"), ax.set_ylabel("true class")
    if class_names is not None and k <= max_labels:
        ax.set_xticks(range(k), [str(c) for c in class_names], rotation=90, fontsize=8)
        ax.set_yticks(range(k), [str(c) for c in class_names], fontsize=8)
    elif k <= max_labels:
        ax.set_xticks(range(k)), ax.set_yticks(range(k))
    else:
        ax.set_xticks([]), ax.set_yticks([])
    if k <= 15:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    acc = np.trace(counts) / max(counts.sum(), 1) * 100
    ax.set_title(title or f"confusion ({int(counts.sum())} videos, top-1 {acc:.1f}%)")
    fig.tight_layout()
    return _save(fig, path)


def overlay_cam(frames: np.ndarray, cam: np.ndarray, weight: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """``frames`` ``(T, H, W, 3)`` uint8 blended with the colour-mapped ``cam`` ``(T, H, W)`` in [0, 1]."""
    matplotlib = require_matplotlib()
    frames, cam = np.asarray(frames), np.asarray(cam)
    if frames.shape[:3] != cam.shape or frames.shape[-1] != 3:
        raise ValueError(f"frames {frames.shape} and CAM {cam.shape} must be (T, H, W, 3) and (T, H, W)")
    heat = matplotlib.colormaps[cmap](np.clip(cam, 0, 1))[..., :3] * 255
    return np.clip((1 - weight) * frames.astype(np.float64) + weight * heat, 0, 255).round().astype(np.uint8)


def plot_cam_strip(frames: np.ndarray, overlays: np.ndarray, path, title: Optional[str] = None,
                   frame_labels: Optional[Sequence[str]] = None) -> Path:
    """One column per frame: the input frame on top, its Grad-CAM overlay below."""
    t = len(frames)
    per = min(1.6, 24.0 / t)  # inches per frame: long clips stay under ~24 in wide
    fig = _figure(figsize=(per * t, 2 * per + (0.5 if title else 0.2)))
    axes = fig.subplots(2, t, squeeze=False)
    for i in range(t):
        for row, img in enumerate((frames[i], overlays[i])):
            ax = axes[row, i]
            ax.imshow(img)
            ax.set_xticks([]), ax.set_yticks([])
        if frame_labels is not None:
            axes[0, i].set_title(str(frame_labels[i]), fontsize=7)
    axes[0, 0].set_ylabel("frames", fontsize=8)
    axes[1, 0].set_ylabel("Grad-CAM", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.3)
    return _save(fig, path)


GIF_MIN_WIDTH = 384  # smaller clips are enlarged (nearest neighbour) to at least this, to be seen


def save_cam_gif(frames: np.ndarray, overlays: np.ndarray, path, fps: float = 4.0) -> Path:
    """An animated GIF, one image per frame: the frame and its overlay side by side, above a bar
    that shows the frame's place in the clip (so no two GIF frames are alike and none is merged);
    at least ``GIF_MIN_WIDTH`` pixels wide, pixels repeated."""
    require_matplotlib()
    from PIL import Image

    t, h, w = frames.shape[:3]
    bar = max(2, h // 32)
    scale = max(1, -(-GIF_MIN_WIDTH // (2 * w)))
    images = []
    for i in range(t):
        canvas = np.zeros((h + bar, 2 * w, 3), np.uint8)
        canvas[:h, :w], canvas[:h, w:] = frames[i], overlays[i]
        canvas[h:, : max(1, round(2 * w * (i + 1) / t))] = 255
        images.append(Image.fromarray(canvas.repeat(scale, 0).repeat(scale, 1)))
    duration = max(20, int(round(1000 / fps)))
    atomic_write(path, lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                                                  duration=duration, loop=0, disposal=1))
    return Path(path)


def plot_alpha(alphas: Mapping[str, np.ndarray], path, title: Optional[str] = None) -> Path:
    """Calibration weights ``alpha_t`` of TAdaConv layers over time, one row per layer: the
    mean over channels with the channel spread (min-max and +-1 std bands; 1 = no calibration),
    and the channel x time heatmap, coloured around 1."""
    if not alphas:
        raise ValueError("no calibration weights to plot")
    n = len(alphas)
    fig = _figure(figsize=(11, 2.2 * n + (0.4 if title else 0)))
    axes = fig.subplots(n, 2, squeeze=False, gridspec_kw=dict(width_ratios=(1, 1.2)))
    for (name, a), (ax, hm) in zip(alphas.items(), axes):
        a = np.asarray(a, dtype=np.float64)
        if a.ndim != 2:
            raise ValueError(f"alpha of {name} must be (channels, time), got shape {a.shape}")
        t = np.arange(a.shape[1])
        mean, std = a.mean(0), a.std(0)
        ax.fill_between(t, a.min(0), a.max(0), color="tab:blue", alpha=0.15, lw=0, label="channel min-max")
        ax.fill_between(t, mean - std, mean + std, color="tab:blue", alpha=0.3, lw=0, label="+-1 std")
        ax.plot(t, mean, "o-", color="tab:blue", ms=3, label="channel mean")
        ax.axhline(1.0, color="0.5", ls="--", lw=0.8)
        ax.set_title(f"{name} ({a.shape[0]} channels)", fontsize=8)
        ax.set_xlabel("frame of the layer"), ax.set_ylabel("alpha_t")
        ax.set_xticks(t if len(t) <= 16 else t[:: max(1, len(t) // 8)])
        dev = max(float(np.abs(a - 1).max()), 1e-3)  # symmetric around 1 (no calibration)
        im = hm.imshow(a, aspect="auto", cmap="coolwarm", vmin=1 - dev, vmax=1 + dev, interpolation="nearest")
        hm.set_xticks(ax.get_xticks())
        hm.set_xlabel("frame of the layer"), hm.set_ylabel("channel")
        fig.colorbar(im, ax=hm, pad=0.02)
    axes[0, 0].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_timeline(result: Mapping, path, num_classes: int = 5) -> Path:
    """A long video's class scores over time (``inference.timeline``): the ``num_classes`` classes that
    lead the most windows (then by peak score) as lines at the windows' centres, and under them the
    segments of the top class as coloured bands named by class."""
    probs = np.asarray(result["probs"], dtype=np.float64)
    windows, names = result["windows"], result.get("class_names")
    centres = np.array([(w["start"] + w["end"]) / 2 for w in windows])
    leads = np.bincount(probs.argmax(1), minlength=probs.shape[1])
    order = sorted(range(probs.shape[1]), key=lambda c: (-leads[c], -probs[:, c].max()))[:num_classes]
    label = (lambda c: names[c]) if names else (lambda c: f"class {c}")
    fig = _figure(figsize=(12, 4.2))
    ax, bands = fig.subplots(2, 1, sharex=True, gridspec_kw=dict(height_ratios=(4, 1)))
    colours = {c: f"C{i}" for i, c in enumerate(order)}
    for c in order:
        ax.plot(centres, probs[:, c], "o-" if len(centres) < 40 else "-", ms=3, color=colours[c], label=label(c))
    ax.set_ylim(0, 1.02), ax.set_ylabel("score (softmax)"), ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right", ncol=min(len(order), 3))
    ax.set_title(f"{Path(str(result.get('video', ''))).name}: {result.get('window_seconds', 0):.3g} s windows every "
                 f"{result.get('stride_seconds', 0):.3g} s", fontsize=9)
    for s in result["segments"]:
        bands.axvspan(s["start"], s["end"], color=colours.get(s["index"], "0.8"), alpha=0.6, lw=0)
        if s["end"] - s["start"] > 0.06 * (windows[-1]["end"] or 1):
            bands.text((s["start"] + s["end"]) / 2, 0.5, label(s["index"]), ha="center", va="center", fontsize=7)
    bands.set_yticks([]), bands.set_ylabel("top class", fontsize=8), bands.set_xlabel("time (s)")
    bands.set_xlim(0, windows[-1]["end"])
    fig.tight_layout()
    return _save(fig, path)
