"""Flags shared by the commands, with numbers validated where they are parsed."""
import argparse
import json
import math
import os

__all__ = ["require_readable", "positive_int", "non_negative_int", "positive_float", "non_negative_float", "probability", "add_data_args", "protocol_overrides"]


def _number(kind, minimum, inclusive=False, maximum=None):
    """argparse type: a finite number of ``kind`` above ``minimum`` (or equal with ``inclusive``),
    at most ``maximum``."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {'>=' if inclusive else '>'} {minimum}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


positive_int = _number(int, 0)
non_negative_int = _number(int, 0, inclusive=True)
positive_float = _number(float, 0)
non_negative_float = _number(float, 0, inclusive=True)
probability = _number(float, 0, inclusive=True, maximum=1)


def add_data_args(p: argparse.ArgumentParser) -> None:
    """Flags that override the model's data protocol (``tada_zoo.data.protocol_from_cfg``)."""
    p.add_argument("--num-frames", type=positive_int, default=None, help="frames per clip (default: the model's)")
    p.add_argument("--sampling", choices=("interval", "segment"), default=None,
                   help="frame sampling (default: the pretrained cfg's, else interval)")
    p.add_argument("--frame-interval", type=positive_int, default=None,
                   help="interval sampling stride in frames at --target-fps (default: the cfg's, else 8/5/2 for 8/16/32 frames)")
    p.add_argument("--target-fps", type=non_negative_float, default=None,
                   help="interval windows are measured at this frame rate, as in the original (default: the cfg's, 30); "
                        "0 counts the file's own frames")
    p.add_argument("--test-size", type=positive_int, default=None,
                   help="evaluation crop (default: the cfg's); the short side keeps the cfg's crop fraction")
    p.add_argument("--workers", type=non_negative_int, default=min(4, os.cpu_count() or 1), help="data loader processes per process")
    p.add_argument("--model-kwargs", type=json.loads, default={},
                   help='extra model arguments as JSON, e.g. \'{"layers": [1, 1, 1, 1]}\'')
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")


def protocol_overrides(args: argparse.Namespace) -> dict:
    """``protocol_from_cfg`` overrides from the data flags (``None`` = keep the cfg's)."""
    return dict(num_frames=args.num_frames, sampling=args.sampling, frame_interval=args.frame_interval,
                target_fps=args.target_fps, test_crop=args.test_size)




def require_readable(dataset, what: str, workers: int) -> None:
    """Open every video of an evaluation / validation list now: a broken one is an error before
    any work (in evaluation a skipped video would change the score)."""
    bad = dataset.probe(workers=workers)
    if bad:
        first = "; ".join(f"{p}: {r}" for p, r in list(bad.items())[:3])
        raise ValueError(f"{len(bad)} of {len(dataset.samples)} videos in {what} cannot be read ({first}"
                         f"{' ...' if len(bad) > 3 else ''}); fix or drop them")
