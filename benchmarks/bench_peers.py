"""tada-zoo against its peers: the original TAdaConv code and pytorchvideo (issue #15).

Sections (``--only``; all by default):

* ``original``: TAda2D-R50 8x224² and TAdaConvNeXtV2-T 16x224² against the original
  implementation (``alibaba-mmai-research/TAdaConv``), imported from the checkout given by
  ``--original`` (nothing of it is copied into this project). Both models get the same
  weights: the original model is filled deterministically, its state dict is mapped into
  ours by the converter's key map (``load_checkpoint``), and the logits must agree in eval
  mode (max |ours - theirs| / max |theirs| <= 1e-4) before anything is timed; the section
  aborts when they do not. Goals: TAda2D >= 2x faster than the original at batch 1 and
  >= 1.6x at batch 4, TAdaConvNeXtV2-T >= 1.3x, peak memory no higher.
* ``pytorchvideo``: its SlowFast-R50 8x8 and R(2+1)D-50 against our ``slowfast_r50_8x8`` /
  ``r2plus1d_r50_8f``, built at the same configuration (R(2+1)D: our R2D layout, i.e. no
  temporal strides and the spatial 1x3x3 conv before the 3x1x1 one) and profiled with
  ``tada_zoo.deploy.profile`` so the FLOPs are seen to be equal. Goal: ours <= 1.0x their time.
  Skipped with the import error when pytorchvideo is missing or does not import.
* ``decode``: ``benchmarks/peers_decode.py``'s ``run`` (arguments after ``--``, else ``--repeats``),
  skipped when that file is absent.

Each mode is one inference call (eval, no_grad) and one training step (forward, cross
entropy, backward, SGD step), at every ``--batches``; ``--compile`` adds ours under
``torch.compile`` (what ``tada-zoo train --compile`` runs) as one more row each. Times: the two implementations take
turns (``common.time_runs``), a ratio is the median of per-turn ratios, for wall time and
for process CPU time (the steadier one on a loaded machine). Peak memory on
CPU: the rise of the resident high-water mark (VmHWM) over one call, in a fresh process
per implementation and configuration (``common.peak_memory_mb``): torch's CPU allocator
is malloc, so tracemalloc does not see tensors, and a fresh process keeps one model's
freed pages from hiding the next one's peak; it counts activations, workspace and (train)
gradients and optimizer state, not the weights and inputs built before the call. On CUDA
(``--device cuda``): ``torch.cuda.max_memory_allocated`` over one call, minus what was
allocated before it.

The original code needs ``pyyaml``, ``einops`` and ``simplejson`` (``pip install
simplejson``; not a tada-zoo dependency); its storage client ``oss2`` is imported by its
checkpoint utilities but never used here, so an empty stand-in module is registered.

    git clone https://github.com/alibaba-mmai-research/TAdaConv /tmp/TAdaConv
    python benchmarks/bench_peers.py --original /tmp/TAdaConv [--only original|pytorchvideo|decode]
        [--models NAME ...] [--modes inference train] [--compile] [--batches 1 4] [--repeats 3] [--size 224] [--frames T] [--threads 2] [--profile-ops]
        [-- decode args]
"""
import argparse
import contextlib
import functools
import io
import math
import os
import sys
import types
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, paired_ratio, peak_memory_mb, time_runs  # noqa: E402

from tada_zoo.cli._args import positive_int  # noqa: E402

SECTIONS = ("original", "pytorchvideo", "decode")
NUM_CLASSES = 400
TOLERANCE = 1e-4
CHECKOUT_HINT = ("get one with `git clone https://github.com/alibaba-mmai-research/TAdaConv /tmp/TAdaConv` "
                 "and pass --original /tmp/TAdaConv")
# our model -> (the original config of its released weights, frames of the issue's setting)
ORIGINAL = {
    "tada2d_r50_8f": ("configs/projects/tada/k400/tada2d_8x8.yaml", 8),
    "tadaconvnextv2_t_16f": ("configs/projects/tadaconvnextv2/tadaconvnextv2_tiny_k400_16f.yaml", 16),
}
ORIGINAL_GOALS = {("tada2d_r50_8f", 1): 2.0, ("tada2d_r50_8f", 4): 1.6}  # original / ours time, else 1.3
PYTORCHVIDEO = {"slowfast_r50_8x8": 32, "r2plus1d_r50_8f": 8}  # our model -> input frames
# parameters the original initialises to zero (calibration, aggregation norms): small values instead,
# so the calibration matters in the check without blowing up alpha = 1 + b(...)
_SMALL = ("b_rf.b.", "dwconv_rf.b", "b_avgpool_bn.", "norm_avgpool.", "bn_b.")


# ---------------------------------------------------------------- the original implementation
def import_original(path: Path):
    """The original's ``Config`` module and ``build_model``, imported from the checkout."""
    if not (path / "tadaconv" / "models" / "base" / "builder.py").is_file():
        raise SystemExit(f"--original {path}: not a checkout of alibaba-mmai-research/TAdaConv "
                         f"(no tadaconv/models/base/builder.py); {CHECKOUT_HINT}")
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    sys.modules.setdefault("oss2", types.ModuleType("oss2"))  # cloud storage client, unused here
    import tadaconv.models  # noqa: F401  (registers its blocks)
    import tadaconv.utils.config as config
    from tadaconv.models.base.builder import build_model

    config.ckp.make_checkpoint_dir = lambda _: None  # Config() would create its OUTPUT_DIR in the checkout
    return config, build_model


def original_model(path: Path, cfg_file: str, frames: int) -> nn.Module:
    """The original model of ``cfg_file``, configured as ``runs/run.py --cfg`` does (CPU, no dropout)."""
    config, build_model = import_original(path)
    cwd, argv = os.getcwd(), sys.argv
    try:
        os.chdir(path)  # Config reads ./configs/pool/base.yaml
        sys.argv = ["run.py", "--cfg", cfg_file]
        with contextlib.redirect_stdout(io.StringIO()):  # its 'Loading config from ...'
            cfg = config.Config(load=True)
    finally:
        os.chdir(cwd)
        sys.argv = argv
    cfg.NUM_GPUS = 0
    cfg.DATA.NUM_INPUT_FRAMES = frames
    cfg.VIDEO.HEAD.DROPOUT_RATE = 0.0  # ours is built without dropout / stochastic depth too
    if hasattr(cfg.VIDEO.BACKBONE, "DROP_PATH"):
        cfg.VIDEO.BACKBONE.DROP_PATH = 0.0
    return build_model(cfg)[0]


@torch.no_grad()
def fill_(model: nn.Module, seed: int = 0) -> dict:
    """Deterministic weights (tensor i from its own seeded generator), fan-in scaled; returns the state dict."""
    sd = {}
    for i, (key, v) in enumerate(model.state_dict().items()):
        g = torch.Generator().manual_seed(seed * 1_000_003 + i)
        core = list(v.shape)
        while len(core) > 1 and core[0] == 1:  # TAdaConv's (1, 1, O, I, kh, kw) is scaled like (O, I, kh, kw)
            core = core[1:]
        small = any(s in key for s in _SMALL)
        if key.endswith("num_batches_tracked"):
            t = torch.zeros_like(v)
        elif key.endswith("running_var"):
            t = torch.rand(v.shape, generator=g) + 0.5
        elif len(core) >= 2:
            t = torch.randn(v.shape, generator=g) * ((0.3 if small else 1.0) / math.sqrt(math.prod(core[1:])))
        elif key.endswith(".weight") and not small:
            t = 1 + 0.1 * torch.randn(v.shape, generator=g)
        else:
            t = 0.1 * torch.randn(v.shape, generator=g)
        sd[key] = t.to(v.dtype)
    model.load_state_dict(sd)
    return sd


class OriginalLogits(nn.Module):
    """The original model returning logits: its head applies softmax in eval mode and returns
    ``(scores, features)``; the logits are the output of ``head.out``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self._logits = None
        model.head.out.register_forward_hook(lambda m, i, o: setattr(self, "_logits", o))

    def forward(self, x):
        self.model(x)
        logits, self._logits = self._logits, None
        return logits.flatten(1)


def original_pair(name: str, path: Path, frames: int):
    """``(ours, theirs)`` with the same weights: theirs filled, its state dict mapped into ours."""
    import timm

    import tada_zoo  # noqa: F401
    from tada_zoo.models import load_checkpoint

    theirs = original_model(path, ORIGINAL[name][0], frames)
    sd = fill_(theirs)
    ours = timm.create_model(name, num_classes=NUM_CLASSES, drop_rate=0.0, drop_path_rate=0.0)
    load_checkpoint(ours, sd)
    return ours, OriginalLogits(theirs)


@torch.no_grad()
def check_agree(ours: nn.Module, theirs: nn.Module, x: torch.Tensor) -> float:
    """max |ours - theirs| / max |theirs| of the eval-mode logits."""
    a, b = ours.eval()(x), theirs.eval()(x)
    if a.shape != b.shape:
        raise SystemExit(f"outputs differ in shape: ours {tuple(a.shape)}, original {tuple(b.shape)}")
    return ((a - b).abs().max() / b.abs().max()).item()


# ---------------------------------------------------------------- pytorchvideo
class TwoPathways(nn.Module):
    """pytorchvideo's SlowFast on one clip: it takes ``[slow, fast]``; the slow frames are
    picked as our model (and the original data pipeline) does."""

    def __init__(self, model: nn.Module, alpha: int):
        super().__init__()
        self.model, self.alpha = model, alpha

    def forward(self, x):
        t = x.shape[2]
        idx = torch.linspace(0, t, t // self.alpha + 1).long()[:-1].to(x.device)
        return self.model([x.index_select(2, idx), x])


def _xy_first_2plus1d_block(**kw):
    """pytorchvideo's (2+1)D bottleneck with the spatial conv first (and striding), as in ours."""
    from pytorchvideo.layers.convolutions import create_conv_2plus1d
    from pytorchvideo.models.resnet import create_bottleneck_block

    conv_b = functools.partial(create_conv_2plus1d, conv_xy_first=True, norm=kw["norm"], norm_eps=kw["norm_eps"],
                               norm_momentum=kw["norm_momentum"], activation=kw["activation"])
    return create_bottleneck_block(**dict(kw, conv_b=conv_b))


def pytorchvideo_model(name: str) -> nn.Module:
    """pytorchvideo's counterpart of our ``name``, logits out, no dropout, any clip size."""
    from pytorchvideo.models.r2plus1d import create_r2plus1d
    from pytorchvideo.models.slowfast import create_slowfast

    if name == "slowfast_r50_8x8":  # its defaults are SlowFast-R50 8x8 (alpha 4, beta 8, fusion kernel 7)
        return TwoPathways(create_slowfast(
            model_num_class=NUM_CLASSES, dropout_rate=0.0, head_pool=nn.AdaptiveAvgPool3d,
            head_output_size=((1, 1, 1), (1, 1, 1))), alpha=4)
    if name == "r2plus1d_r50_8f":
        return create_r2plus1d(
            model_num_class=NUM_CLASSES, dropout_rate=0.0, stage_temporal_stride=(1, 1, 1, 1),
            stage_bottleneck=(_xy_first_2plus1d_block,) * 4, head_pool=nn.AdaptiveAvgPool3d,
            head_output_size=(1, 1, 1), head_activation=None)
    raise ValueError(f"no pytorchvideo counterpart for {name}")


def pytorchvideo_pair(name: str):
    import timm

    import tada_zoo  # noqa: F401

    torch.manual_seed(0)
    return timm.create_model(name, num_classes=NUM_CLASSES, drop_rate=0.0), pytorchvideo_model(name)


# ---------------------------------------------------------------- calls to measure
def make_step(model: nn.Module, x: torch.Tensor, train: bool):
    """One inference call (eval, no_grad) or one SGD training step of ``model`` on ``x``."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    if not train:
        model.eval()

        def step():
            with torch.no_grad():
                model(x)
            sync()
        return step
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    target = torch.randint(NUM_CLASSES, (x.shape[0],), generator=torch.Generator().manual_seed(0)).to(x.device)

    def step():
        loss = F.cross_entropy(model(x), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
    return step


def clip(batch: int, frames: int, size: int, device: str) -> torch.Tensor:
    return torch.randn(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(1)).to(device)


def build_call(section: str, impl: str, name: str, batch: int, frames: int, size: int, train: bool,
               original: str, device: str):
    """The step of one implementation alone (top level, so a memory-measuring process can build it)."""
    pair = (original_pair(name, Path(original), frames) if section == "original" else pytorchvideo_pair(name))
    model = pair[0 if impl == "ours" else 1].to(device)
    del pair
    return make_step(model, clip(batch, frames, size, device), train)


def peak_mb(build, device: str, threads: int) -> float:
    if device == "cpu":
        return peak_memory_mb(build, threads)
    fn = build()
    fn()  # warm-up (cuDNN workspaces, lazy init)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    return (torch.cuda.max_memory_allocated() - before) / 2 ** 20


def top_ops(name: str, fn, rows: int = 10) -> None:
    """Where the time of one call goes (torch.profiler, self time per op)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts) as prof:
        fn()
    key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    print(f"\n{name}: top ops by self time")
    print(prof.key_averages().table(sort_by=key, row_limit=rows))


def compare(section: str, name: str, pair, frames: int, args, goals: dict, theirs_label: str) -> None:
    """Time (and measure the memory of) ours and theirs at every batch and mode: one table row each."""
    ours, theirs = (m.to(args.device) for m in pair)
    for batch in args.batches:
        x = clip(batch, frames, args.size, args.device)
        for train in [m == "train" for m in args.modes]:
            mode = "train step" if train else "inference"
            calls = {"ours": make_step(ours, x, train), "theirs": make_step(theirs, x, train)}
            if args.compile:  # compiled in the warm-up call of time_runs, then timed in turn with the others
                calls["compiled"] = make_step(torch.compile(ours), x, train)
            runs = time_runs(calls, repeats=args.repeats)
            speedup = 1 / paired_ratio(runs, "ours", "theirs")
            cpu_speedup = 1 / paired_ratio(runs, "ours", "theirs", cpu=True)
            mem = "- | - | -"
            if not args.no_memory:
                mb = {impl: peak_mb(functools.partial(build_call, section, impl, name, batch, frames, args.size,
                                                      train, str(args.original), args.device),
                                    args.device, args.threads)
                      for impl in ("ours", "theirs")}
                mem = f"{mb['ours']:.0f} | {mb['theirs']:.0f} | {mb['ours'] / mb['theirs']:.2f}"
            print(f"| {name} | {batch} | {mode} | {median_time(runs, 'ours'):.3f} | {median_time(runs, 'theirs'):.3f} | "
                  f"{speedup:.2f} | {cpu_speedup:.2f} | {goals[batch]:g} | {mem} |", flush=True)
            if args.compile:
                print(f"| {name} (ours compiled) | {batch} | {mode} | {median_time(runs, 'compiled'):.3f} | "
                      f"{median_time(runs, 'theirs'):.3f} | {1 / paired_ratio(runs, 'compiled', 'theirs'):.2f} | "
                      f"{1 / paired_ratio(runs, 'compiled', 'theirs', cpu=True):.2f} | {goals[batch]:g} | - | - | - |",
                      flush=True)
            if args.profile_ops:
                top_ops(f"{name} ours, batch {batch}, {mode}", calls["ours"])
                top_ops(f"{name} {theirs_label}, batch {batch}, {mode}", calls["theirs"])
            del calls


def table_header(theirs: str) -> None:
    print(f"| model | batch | mode | ours s | {theirs} s | {theirs} / ours time | same, CPU time | goal "
          f"| ours MB | {theirs} MB | ours / {theirs} memory |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")


# ---------------------------------------------------------------- sections
def run_original(args) -> None:
    print("\n## original (alibaba-mmai-research/TAdaConv)")
    if args.original is None:
        print(f"skipped: no --original checkout; {CHECKOUT_HINT}")
        return
    try:
        import_original(args.original)
    except ImportError as e:
        print(f"skipped: the original code does not import: {type(e).__name__}: {e} "
              "(it needs pyyaml, einops, simplejson: pip install simplejson)")
        return
    pairs = {}
    for name, (_, issue_frames) in ORIGINAL.items():
        if args.models and name not in args.models:
            continue
        frames = args.frames or issue_frames
        pair = original_pair(name, args.original, frames)
        err = check_agree(*pair, clip(1, frames, args.size, "cpu"))
        print(f"{name}: same weights, eval logits max relative difference {err:.1e} (tolerance {TOLERANCE:g})")
        if not err <= TOLERANCE:
            print(f"aborted: {name} and the original disagree; nothing is timed")
            return
        pairs[name] = (pair, frames)
    table_header("original")
    for name, (pair, frames) in pairs.items():
        goals = {b: ORIGINAL_GOALS.get((name, b), 1.3) for b in args.batches}
        compare("original", name, pair, frames, args, goals, "original")


def run_pytorchvideo(args) -> None:
    print("\n## pytorchvideo")
    try:
        from pytorchvideo.models.r2plus1d import create_r2plus1d  # noqa: F401
        from pytorchvideo.models.slowfast import create_slowfast  # noqa: F401
    except Exception as e:  # any import failure (missing, or broken against today's torchvision) skips
        print(f"skipped: pytorchvideo's model builders do not import: {type(e).__name__}: {e} "
              "(pip install pytorchvideo)")
        return
    from tada_zoo.deploy.profile import count_gmacs, count_params

    pairs = {}
    for name, issue_frames in PYTORCHVIDEO.items():
        if args.models and name not in args.models:
            continue
        frames = args.frames or issue_frames
        pair = pytorchvideo_pair(name)
        shape = (1, 3, frames, args.size, args.size)
        g = [count_gmacs(m, shape) for m in pair]
        p = [count_params(m) / 1e6 for m in pair]
        print(f"{name}: ours {g[0]:.2f} GFLOPs {p[0]:.2f}M params, pytorchvideo {g[1]:.2f} GFLOPs {p[1]:.2f}M params "
              f"(FLOP ratio {g[0] / g[1]:.3f}), input {'x'.join(map(str, shape))}")
        pairs[name] = (pair, frames)
    table_header("pytorchvideo")
    for name, (pair, frames) in pairs.items():
        compare("pytorchvideo", name, pair, frames, args, dict.fromkeys(args.batches, 1.0), "pytorchvideo")


def run_decode(argv) -> None:
    print("\n## decode")
    if not Path(__file__).with_name("peers_decode.py").is_file():
        print("skipped: benchmarks/peers_decode.py is absent")
        return
    import peers_decode

    peers_decode.run(peers_decode.parser().parse_args(argv))


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    decode_argv = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=SECTIONS, action="append", help="run this section (repeatable); default all")
    p.add_argument("--original", type=Path, help="checkout of alibaba-mmai-research/TAdaConv")
    p.add_argument("--models", nargs="+", choices=sorted({*ORIGINAL, *PYTORCHVIDEO}),
                   help="only these of our models (default: all of each section)")
    p.add_argument("--modes", nargs="+", choices=("inference", "train"), default=["inference", "train"],
                   help="which calls to measure")
    p.add_argument("--batches", type=positive_int, nargs="+", default=[1, 4])
    p.add_argument("--repeats", type=positive_int, default=5, help="turns per measurement (median)")
    p.add_argument("--size", type=positive_int, default=224)
    p.add_argument("--frames", type=positive_int, help="clip length of every model (default: the issue's)")
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    p.add_argument("--compile", action="store_true",
                   help="also time ours under torch.compile (the path of `train --compile`; the peers stay "
                        "eager), one extra row per measurement; compiling takes minutes per mode on a CPU")
    p.add_argument("--profile-ops", action="store_true", help="print torch.profiler's top ops of every call")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.device}, {args.threads} threads, {args.size}x{args.size}, "
          f"{args.repeats} turns, load average {os.getloadavg()[0]:.2f}")
    sections = args.only or SECTIONS
    if "original" in sections:
        run_original(args)
    if "pytorchvideo" in sections:
        run_pytorchvideo(args)
    if "decode" in sections:
        run_decode(decode_argv or ["--repeats", str(args.repeats)])


if __name__ == "__main__":
    main()
