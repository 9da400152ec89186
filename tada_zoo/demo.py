"""Main job on an embedded default: TAda2D vs TSN on a task that needs temporal order.

A square grows or shrinks and brightens or dims over the clip: four classes, and each
clip played backwards belongs to another class (grow+brighten <-> shrink+dim). Averaging
frame scores (TSN) cannot tell a clip from its reversal, so TSN can at best find the pair
(50%); TAda2D calibrates each frame's convolution from its temporal context (paper
Eq. 4-6) and learns the order. Everything is generated in
memory: no download, no data on disk.

Note that the calibration sees spatially pooled frame descriptors, so a clip must change
in what it shows, not only where: a square sliding left or right has the same
descriptors in both directions.
"""
import argparse
import time

import timm
import torch
import torch.nn.functional as F

import tada_zoo  # noqa: F401

CLASSES = ("grow+brighten", "grow+dim", "shrink+brighten", "shrink+dim")


def temporal_order_clips(n: int, frames: int = 8, size: int = 32, generator=None):
    """``n`` clips ``(n, 3, T, H, W)`` and labels; each clip's reversal is another class."""
    labels = torch.randint(len(CLASSES), (n,), generator=generator)
    grow = torch.where(labels < 2, 1.0, -1.0)
    brighten = torch.where(labels % 2 == 0, 1.0, -1.0)
    t = torch.linspace(-1, 1, frames)
    half = 5 + 3 * grow[:, None] * t  # half side: 2..8 px
    level = 0.6 + 0.4 * brighten[:, None] * t  # 0.2..1.0
    centre = 8 + torch.rand(n, 2, generator=generator) * (size - 16)
    colour = 0.5 + 0.5 * torch.rand(n, 3, generator=generator)
    coords = torch.arange(size).float()
    dy = (coords.view(1, 1, -1, 1) - centre[:, 0].view(-1, 1, 1, 1)).abs()
    dx = (coords.view(1, 1, 1, -1) - centre[:, 1].view(-1, 1, 1, 1)).abs()
    inside = (dy <= half[..., None, None]) & (dx <= half[..., None, None])  # (n, T, H, W)
    clips = inside[:, None] * (level[:, None, :, None, None] * colour[:, :, None, None, None])
    return clips + 0.1 * torch.randn(clips.shape, generator=generator), labels


def train_and_evaluate(name: str, steps: int, batch_size: int, seed: int, frames: int) -> float:
    torch.manual_seed(seed)
    model = timm.create_model(name, layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), stem_width=16,
                              num_classes=len(CLASSES), drop_rate=0.0, num_frames=frames)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        x, y = temporal_order_clips(batch_size, frames, generator=g)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    model.eval()
    x, y = temporal_order_clips(512, frames, generator=torch.Generator().manual_seed(10_000 + seed))
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"Task: {', '.join(CLASSES)} (TSN's ceiling: 50%), "
          f"{args.frames} frames 32x32, {args.steps} steps of batch {args.batch_size}")
    results = {}
    for name in ("tsn_r50_8f", "tada2d_r50_8f"):
        start = time.time()
        results[name] = train_and_evaluate(name, args.steps, args.batch_size, args.seed, args.frames)
        print(f"  {name:15s} (tiny: layers 1-1-1-1)  top-1 {100 * results[name]:5.1f}%  ({time.time() - start:.0f} s)")
    gain = 100 * (results["tada2d_r50_8f"] - results["tsn_r50_8f"])
    print(f"TAda2D - TSN: {gain:+.1f} points of top-1")


if __name__ == "__main__":
    main()
