"""TAdaConv3d speed: fast path vs the literal per-frame-weight reference vs nn.Conv3d.

    python benchmarks/bench_tadaconv3d.py [--batch 1 --channels 256 --frames 8 --size 14 --device cpu]

Default shape: an R3D res4 3x3x3 conv (256 -> 256 channels, 8 frames, 14x14). Also times
"taps", the other exact cin formulation (one 2D conv per temporal tap, summed), to show
why the fast path stacks the taps instead. Prints medians of --repeats interleaved turns and
ratios to nn.Conv3d (median of the per-turn ratios).
"""
import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, paired_ratio, time_runs  # noqa: E402

from tada_zoo.layers import TAdaConv3d
from tada_zoo.layers.tadaconv import temporal_taps


def taps_forward(conv: TAdaConv3d, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """cin calibration as ``sum_j conv2d(tap_j * alpha, W[:, :, j])``."""
    xf, af = x.transpose(1, 2), alpha.transpose(1, 2)
    B = x.shape[0]
    y = None
    for j, tap in enumerate(temporal_taps(xf, conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0])):
        out = F.conv2d((tap * af).flatten(0, 1), conv.weight[:, :, j], None, conv.stride[1:],
                       conv.padding[1:], conv.dilation[1:], conv.groups)
        y = out if y is None else y + out
    if conv.bias is not None:
        y = y + conv.bias.view(-1, 1, 1)
    return y.unflatten(0, (B, -1)).transpose(1, 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=14)
    p.add_argument("--kernel", type=int, nargs=3, default=(3, 3, 3))
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0: torch default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev, C = args.device, args.channels
    kernel = tuple(args.kernel)
    padding = tuple(k // 2 for k in kernel)
    print(f"device={dev} threads={torch.get_num_threads()} x=({args.batch}, {C}, {args.frames}, "
          f"{args.size}, {args.size}) kernel={kernel}")
    x = torch.randn(args.batch, C, args.frames, args.size, args.size, device=dev)
    plain = torch.nn.Conv3d(C, C, kernel, padding=padding, bias=False).to(dev)
    for cal_dim in ("cin", "cout"):
        conv = TAdaConv3d(C, C, kernel, padding=padding, cal_dim=cal_dim).to(dev)
        alpha = 1 + 0.1 * torch.randn(args.batch, C, args.frames, 1, 1, device=dev)
        paths = {"nn.Conv3d": lambda x, a: plain(x), "fast": conv, "reference": conv.forward_reference}
        if cal_dim == "cin":
            paths["taps"] = lambda x, a: taps_forward(conv, x, a)
        with torch.no_grad():
            err = (conv(x, alpha) - conv.forward_reference(x, alpha)).abs().max().item()
        print(f"\ncal_dim={cal_dim}  (fast vs reference max abs diff {err:.1e})")
        print(f"{'path':<12}{'infer ms':>10}{'ratio':>8}{'fwd+bwd ms':>12}{'ratio':>8}")
        xg, ag = x.clone().requires_grad_(), alpha.clone().requires_grad_()
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
        with torch.no_grad():
            inf = time_runs({n: (lambda fn=fn: (fn(x, alpha), sync())) for n, fn in paths.items()}, args.repeats)
        train = time_runs(
            {n: (lambda fn=fn: (fn(xg, ag).sum().backward(), sync())) for n, fn in paths.items()}, args.repeats)
        for name in paths:
            print(f"{name:<12}{1e3 * median_time(inf, name):>10.2f}{paired_ratio(inf, name, 'nn.Conv3d'):>8.2f}"
                  f"{1e3 * median_time(train, name):>12.2f}{paired_ratio(train, name, 'nn.Conv3d'):>8.2f}")


if __name__ == "__main__":
    main()
