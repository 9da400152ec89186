"""Build the ``.in1k_inflated`` weights of TAdaConvNeXt from a local 2D ConvNeXt checkpoint.

The paper's TAdaConvNeXt-T weights were never released; its starting point, the
ImageNet-1k ConvNeXt-T inflated into the video network (tubelet stem centre-initialised,
calibration at identity), is what we publish under ``tadaconvnext_t_{16f,32f}.in1k_inflated``.

    python conversion/inflate_convnext.py --source convnext_tiny.fb_in1k.safetensors \\
        --model tadaconvnext_t_16f --output out/tadaconvnext_t_16f.in1k_inflated

``--source`` is timm's ``convnext_tiny.fb_in1k`` (``model.safetensors`` or
``pytorch_model.bin`` from the Hub, downloaded beforehand) or the original
``convnext_tiny_1k_224_ema.pth``. Writes ``model.safetensors`` and ``config.json`` into
``--output`` (each to a temp file, then renamed).
"""
import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import timm
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tada_zoo  # noqa: E402,F401  (registers the models)
from tada_zoo.models._helpers import read_checkpoint  # noqa: E402
from tada_zoo.inflate import inflate_convnext  # noqa: E402


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def inflate_file(source: Path, model_name: str, output: Path, model_args: dict) -> Path:
    state_dict = read_checkpoint(source)[0]
    num_classes = state_dict["head.fc.weight"].shape[0] if "head.fc.weight" in state_dict else (
        state_dict["head.weight"].shape[0] if "head.weight" in state_dict else 0)
    model = timm.create_model(model_name, pretrained=False, num_classes=num_classes, **model_args)
    inflate_convnext(model, state_dict)
    output.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    _atomic(output / "model.safetensors", lambda p: save_file(tensors, p, metadata={"format": "pt"}))
    config = dict(architecture=model_name, num_classes=num_classes, model_args=model_args,
                  source=source.name, how="tada_zoo.inflate.inflate_convnext")
    _atomic(output / "config.json", lambda p: Path(p).write_text(json.dumps(config, indent=2)))
    return output / "model.safetensors"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, required=True, help="2D ConvNeXt checkpoint (.safetensors/.bin/.pth)")
    p.add_argument("--model", default="tadaconvnext_t_16f", help="video architecture to inflate into")
    p.add_argument("--output", type=Path, required=True, help="output folder")
    p.add_argument("--model-args", default="{}", help="JSON dict of extra model arguments (e.g. depths/dims)")
    args = p.parse_args(argv)
    out = inflate_file(args.source, args.model, args.output, json.loads(args.model_args))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
