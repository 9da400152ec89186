"""Flags shared by the commands, with numbers validated where they are parsed."""
import argparse
import json
import math
import os

__all__ = ["add_pretrained_args", "resolve_pretrained", "require_readable", "positive_int", "non_negative_int", "positive_float", "non_negative_float", "probability", "add_data_args", "add_decoder_arg", "protocol_overrides",
           "open_fraction", "json_object", "HelpFormatter"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's help ends with its default, except where the default is "not given"
    (``None`` / ``False``: the help says what happens then)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


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


def open_fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be < 1, got {text}")
    return value


def json_object(text: str) -> dict:
    """argparse type: a JSON object (model arguments)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"layers\": [1, 1, 1, 1]}}', got {text!r}")
    return value


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
    p.add_argument("--model-kwargs", type=json_object, default={},
                   help='extra model arguments as JSON, e.g. \'{"layers": [1, 1, 1, 1]}\' (a checkpoint written by '
                        'train already says them)')
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    add_decoder_arg(p)


class _DecoderAction(argparse.Action):
    """``--decoder NAME``: checked and made the process's video backend where it is parsed, so every
    reader of the command (datasets, their worker processes, predict, extract) uses it."""

    def __call__(self, parser, namespace, value, option_string=None):
        from tada_zoo.data import set_default_backend

        try:
            set_default_backend(value)
        except (ImportError, ValueError) as e:
            parser.error(f"argument {option_string}: {e}")
        setattr(namespace, self.dest, value)


def add_decoder_arg(p: argparse.ArgumentParser) -> None:
    """``--decoder pyav|torchcodec``: the video decoding library (same frames, docs/data.md)."""
    p.add_argument("--decoder", choices=("pyav", "torchcodec"), default=None, action=_DecoderAction,
                   help="video decoding library; both give the same frames (torchcodec reads files it cannot "
                        "decode identically with PyAV, warning once). torchcodec: pip install "
                        "'tada-zoo[torchcodec]' plus FFmpeg's shared libraries (default: $TADA_ZOO_DECODER, "
                        "else pyav)")


def protocol_overrides(args: argparse.Namespace) -> dict:
    """``protocol_from_cfg`` overrides from the data flags (``None`` = keep the cfg's)."""
    return dict(num_frames=args.num_frames, sampling=args.sampling, frame_interval=args.frame_interval,
                target_fps=args.target_fps, test_crop=args.test_size)




def add_pretrained_args(group, parser: argparse.ArgumentParser) -> None:
    """``--pretrained [TAG|PATH]`` (into ``group``, e.g. a mutually exclusive one) and ``--download``."""
    group.add_argument("--pretrained", nargs="?", const=True, default=None, metavar="TAG|PATH",
                       help="start from pretrained weights: the model's default tag, a tag (e.g. k400), or a local "
                            "original .pyth, .safetensors or converted folder. A tag's weights come from "
                            "$TADA_ZOO_HOME (default ~/.cache/tada_zoo; an original checkpoint dropped there is "
                            "converted on first use), then the Hugging Face Hub")
    parser.add_argument("--download", action="store_true",
                        help="with --pretrained TAG: download the tag's original checkpoint from its published URL "
                             "into $TADA_ZOO_HOME if it is not there (pip install 'tada-zoo[download]')")


def resolve_pretrained(args: argparse.Namespace, model: str):
    """``args.pretrained`` for ``create_video_model``, after ``--download``; a tag whose weights are
    nowhere (not in the weights folder, not published, not in the HF cache) fails now, before any
    data is read, saying in this command's flags where to get them."""
    pretrained, download = args.pretrained, getattr(args, "download", False)
    if not pretrained:
        if download:
            raise ValueError("--download needs --pretrained [TAG]")
        return None
    from tada_zoo.models import WeightsNotAvailableError, registered_cfg, registered_tags
    from tada_zoo.models._weights import find_local_weights, in_hf_cache, weights_help

    arch, _, tag = model.partition(".")
    if pretrained is not True:
        if pretrained not in registered_tags(arch):
            if download:
                raise ValueError(f"--download: --pretrained {pretrained} is a file, not a tag of {arch}")
            return pretrained  # a path: create_video_model checks it
        tag = pretrained
    cfg = registered_cfg(f"{arch}.{tag}" if tag else arch)
    name = f"{arch}.{cfg.tag}" if cfg.tag else arch
    flag = "--pretrained" + ("" if pretrained is True else f" {pretrained}")
    if download and getattr(cfg, "original_file", None):
        from tada_zoo.weights.download import download_original

        download_original(name)
    elif find_local_weights(name, cfg) is None and not getattr(cfg, "published", False) and not in_hf_cache(cfg):
        raise WeightsNotAvailableError(weights_help(name, cfg, cli=flag))
    return pretrained


def require_readable(dataset, what: str, workers: int) -> None:
    """Open every video of an evaluation / validation list now: a broken one is an error before
    any work (in evaluation a skipped video would change the score)."""
    bad = dataset.probe(workers=workers)
    if bad:
        first = "; ".join(f"{p}: {r}" for p, r in list(bad.items())[:3])
        raise ValueError(f"{len(bad)} of {len(dataset.samples)} videos in {what} cannot be read ({first}"
                         f"{' ...' if len(bad) > 3 else ''}); fix or drop them")
