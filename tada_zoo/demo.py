"""Main job on an embedded default: TAda2D vs TSN on a task that needs temporal order.

Clips show a square moving in one of four directions; the class is the direction. Any
single frame (and so the frame average TSN relies on) is the same for opposite
directions, so TSN stays near chance while TAda2D, which sees its temporal context,
learns the task. Everything is generated in memory: no download, no data on disk.
"""
import argparse
import time

import timm
import torch
import torch.nn.functional as F

import tada_zoo  # noqa: F401

DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # right, left, down, up


def moving_squares(n: int, frames: int = 8, size: int = 32, square: int = 6, speed: int = 1, generator=None):
    """``n`` clips ``(n, 3, T, H, W)`` of a square moving ``speed`` px a frame, labels = direction.

    The path is centred on a random point, so opposite directions visit the same
    positions: a clip's set of frames does not reveal its direction, only its axis.
    """
    labels = torch.randint(len(DIRECTIONS), (n,), generator=generator)
    half = speed * (frames - 1) / 2
    centre = half + torch.rand(n, 2, generator=generator) * (size - square - 2 * half)
    colour = 0.5 + 0.5 * torch.rand(n, 3, generator=generator)
    clips = 0.1 * torch.randn(n, 3, frames, size, size, generator=generator)
    for i in range(n):
        step = speed * torch.tensor(DIRECTIONS[int(labels[i])], dtype=torch.float)
        for t in range(frames):
            y, x = (centre[i] + (t - (frames - 1) / 2) * step).round().long().tolist()
            clips[i, :, t, y:y + square, x:x + square] += colour[i].view(3, 1, 1)
    return clips, labels


def train_and_evaluate(name: str, steps: int, batch_size: int, seed: int, frames: int) -> float:
    torch.manual_seed(seed)
    model = timm.create_model(name, layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), stem_width=16,
                              num_classes=len(DIRECTIONS), drop_rate=0.0, num_frames=frames)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        x, y = moving_squares(batch_size, frames, generator=g)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    model.eval()
    x, y = moving_squares(512, frames, generator=torch.Generator().manual_seed(10_000 + seed))
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
    print(f"Task: direction of a moving square ({len(DIRECTIONS)} classes; frames alone give the axis, 50%), "
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
