"""Export a video model for deployment, and check the exported file against the eager model.

Formats (``FORMATS``), all with an optional dynamic batch axis (the clip shape is fixed):

- ``"onnx"``: the TorchScript-based ONNX exporter (``torch.onnx.export(dynamo=False)``);
- ``"onnx-dynamo"``: the torch.export-based ONNX exporter (``dynamo=True``, opset >= 18);
- ``"torchscript"``: ``torch.jit.trace`` (``torch.jit.script`` does not compile these models:
  their forward uses Python that TorchScript lacks; tracing records the same graph);
- ``"exported-program"``: ``torch.export`` (``.pt2``, load with ``torch.export.load``).

A TAdaFormer exported at another resolution than its ``pos_embed`` is exported from a copy
whose ``pos_embed`` is resampled once to that size (same numbers, no resampling in the graph).
See docs/deploy.md.
"""
import copy
import io
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn

from tada_zoo._files import atomic_write

__all__ = ["FORMATS", "export_model", "example_input", "check_export", "load_exported"]

FORMATS = ("onnx", "onnx-dynamo", "torchscript", "exported-program")
INPUT_NAME = "video"


def example_input(model: nn.Module, frames: Optional[int] = None, size: Optional[int] = None,
                  batch: int = 2) -> torch.Tensor:
    """A random clip ``(batch, in_chans, frames, size, size)``: by default the model's frame count
    and its pretrained cfg's input size (else 224)."""
    frames = frames or getattr(model, "num_frames", None) or 8
    if size is None:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        size = (cfg.get("input_size") or (3, 224, 224))[-1]
    for name, value in (("batch", batch), ("frames", frames), ("size", size)):
        if int(value) < 1:
            raise ValueError(f"example_input: {name} must be >= 1, got {value}")
    return torch.randn(batch, getattr(model, "in_chans", 3), frames, size, size)


def _outputs(y) -> List[torch.Tensor]:
    return list(y) if isinstance(y, (list, tuple)) else [y]


def _output_names(n: int) -> List[str]:
    return ["output"] if n == 1 else [f"output_{i}" for i in range(n)]


def _for_size(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """``model``, or a copy with ``pos_embed`` resampled to the example's size (ViTs with ``set_input_size``)."""
    patch, grid = getattr(model, "patch_size", None), getattr(model, "grid_size", None)
    if not hasattr(model, "set_input_size") or patch is None or grid is None:
        return model
    size = tuple(example.shape[-2:])
    if tuple(s // patch for s in size) == tuple(grid):
        return model
    model = copy.deepcopy(model)
    model.set_input_size(size)
    return model


def export_model(
        model: nn.Module,
        path: Union[str, Path],
        format: str = "onnx",
        example: Optional[torch.Tensor] = None,
        dynamic_batch: bool = True,
        opset: int = 17,
) -> Path:
    """Export ``model`` (in eval mode) to ``path``, traced on ``example`` (default ``example_input(model)``).

    ``dynamic_batch``: the batch axis is symbolic (named ``batch``), so the file runs any batch
    size; the example then needs a batch of at least 2 (a batch of 1 is specialised by the
    tracers). ``opset``: ONNX opset (>= 17; the dynamo exporter uses at least 18). The file is
    written atomically. Returns ``path``.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if opset < 17:
        raise ValueError(f"opset must be >= 17 (LayerNormalization), got {opset}")
    example = example_input(model) if example is None else example
    if not torch.is_tensor(example) or example.dim() != 5:
        raise ValueError(f"example must be a (B, C, T, H, W) tensor, got {getattr(example, 'shape', type(example))}")
    if dynamic_batch and example.shape[0] < 2:
        raise ValueError(f"a dynamic batch needs an example batch of at least 2 (got {example.shape[0]}); "
                         "a batch of 1 is specialised by the exporters")
    path = Path(path)
    was_training = model.training
    model.eval()
    try:
        net = _for_size(model, example)
        with torch.no_grad():
            names = _output_names(len(_outputs(net(example))))
        if format == "onnx":
            axes = {n: {0: "batch"} for n in [INPUT_NAME] + names} if dynamic_batch else None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TracerWarnings and the legacy exporter's deprecation notice
                atomic_write(path, lambda tmp: torch.onnx.export(
                    net, (example,), tmp, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                    output_names=names, dynamic_axes=axes))
        elif format == "onnx-dynamo":
            program = torch.onnx.export(
                net, (example,), dynamo=True, opset_version=max(opset, 18), input_names=[INPUT_NAME],
                output_names=names, dynamic_shapes=_dynamic_shapes(dynamic_batch), verbose=False)
            atomic_write(path, lambda tmp: program.save(tmp, external_data=False))
        elif format == "torchscript":
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                traced = torch.jit.trace(net, (example,), check_trace=False)
            buf = io.BytesIO()
            torch.jit.save(traced, buf)
            atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))
        else:
            program = torch.export.export(net, (example,), dynamic_shapes=_dynamic_shapes(dynamic_batch))
            buf = io.BytesIO()
            torch.export.save(program, buf)
            atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))
    finally:
        model.train(was_training)
    return path


def _dynamic_shapes(dynamic_batch: bool):
    return ({0: torch.export.Dim("batch")},) if dynamic_batch else None


def load_exported(path: Union[str, Path], format: str):
    """A callable ``(B, C, T, H, W) tensor -> list of output tensors`` running the exported file
    (onnxruntime on CPU for ONNX)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no exported model at {path}")
    if format in ("onnx", "onnx-dynamo"):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError("checking an ONNX export needs onnxruntime: pip install 'tada-zoo[export]'") from e
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: [torch.from_numpy(y) for y in session.run(None, {name: x.numpy()})]
    if format == "torchscript":
        module = torch.jit.load(str(path))
    elif format == "exported-program":
        module = torch.export.load(str(path)).module()
    else:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    return lambda x: _outputs(module(x))


def check_export(path: Union[str, Path], format: str, model: nn.Module, inputs: Sequence[torch.Tensor],
                 rtol: float = 1e-3, atol: float = 1e-4) -> float:
    """Run the exported file on each input and compare with ``model`` in eval mode.

    Returns the largest absolute difference; raises RuntimeError naming the input shape when an
    output differs beyond ``|a - b| <= atol + rtol * |b|`` or has another shape.
    """
    run = load_exported(path, format)
    was_training = model.training
    model.eval()
    worst = 0.
    try:
        for x in inputs:
            with torch.no_grad():
                ref = _outputs(model(x))
            with torch.no_grad():
                got = run(x.contiguous())
            if len(got) != len(ref):
                raise RuntimeError(f"{path}: {len(got)} outputs for input {tuple(x.shape)}, the model gives {len(ref)}")
            for a, b in zip(got, ref):
                if a.shape != b.shape:
                    raise RuntimeError(f"{path}: output shape {tuple(a.shape)} for input {tuple(x.shape)}, "
                                       f"the model gives {tuple(b.shape)}")
                diff = (a.float() - b.float()).abs()
                worst = max(worst, diff.max().item() if diff.numel() else 0.)
                if not torch.all(diff <= atol + rtol * b.float().abs()):
                    raise RuntimeError(f"{path}: output differs from the model by up to {diff.max().item():.3g} "
                                       f"for input {tuple(x.shape)} (rtol={rtol}, atol={atol})")
    finally:
        model.train(was_training)
    return worst
