"""Deployment paths for every family (tiny models): ONNX with both exporters (checked with onnxruntime at
batch sizes other than the example's), torch.export, traced TorchScript, torch.compile without graph
breaks or batch recompiles, channels_last_3d, FX tracing, the ``tada-zoo export`` command, and the
eager shape errors that all of this must keep."""
import json

import pytest
import timm
import torch
import torch.nn as nn

import tada_zoo  # noqa: F401
from _engine_utils import one_thread  # noqa: F401  (autouse)
from tada_zoo.deploy.export import check_export, export_model
from test_models import FAMILIES

# one TAda model per family (the baselines share their code paths); the kwargs are test_models.py's
MODELS = {
    "tada2d_r50_8f": "VideoResNet",
    "r2plus1d_r50_8f_tada2d1d": "ResNet3d",  # TAdaConv2d + aggregation, and TAdaConv3d
    "slowfast_r50_8x8_tada": "SlowFast",
    "tadaconvnextv2_t_16f": "TAdaConvNeXt",  # V2: transformer route function, bias calibration, QuickGELU
    "tadaformer_b16_16f": "TAdaFormer",
}
NAMES = list(MODELS)


def _model(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=5, **dict(FAMILIES[MODELS[name]].kwargs, **kwargs)).eval()
    for m in model.modules():  # random BN statistics and calibration, so the tests see every path
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-.5, .5)
            m.running_var.uniform_(.5, 2)
            nn.init.uniform_(m.weight, .5, 1.5)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".b.weight" in n or "norm_pool" in n or n.endswith("proj.weight"):  # zero-initialised parts
                p.normal_(0, .05)
    return model


def _clip(name: str, batch: int, seed: int = 1, **shape) -> torch.Tensor:
    torch.manual_seed(seed)
    _, C, T, H, W = FAMILIES[MODELS[name]].input_shape
    return torch.randn(batch, C, shape.get("T", T), shape.get("H", H), shape.get("W", W))


# ---- ONNX, torch.export, TorchScript -----------------------------------------------------------

@pytest.mark.parametrize("fmt", ["onnx", "onnx-dynamo", "exported-program", "torchscript"])
@pytest.mark.parametrize("name", NAMES)
def test_export_dynamic_batch_matches_eager(name, fmt, tmp_path):
    model = _model(name)
    path = export_model(model, tmp_path / f"m.{fmt}", fmt, example=_clip(name, 2))
    # batch sizes other than the example's: the batch axis must not be baked into the graph
    err = check_export(path, fmt, model, [_clip(name, 3, seed=2), _clip(name, 1, seed=3)], rtol=1e-4, atol=1e-5)
    assert err < 1e-4
    assert not model.training


@pytest.mark.parametrize("fmt", ["onnx"])  # the dynamo exporter functionalises in-place updates itself
def test_tadaformer_ssv2_onnx(fmt, tmp_path):
    """The SSV2 TAdaFormer: TemporalLinear pre_proj (shifted in-place sums) and a second TAda branch."""
    model = _model("tadaformer_b16_16f", temporal_kernel=3, double_tada=True)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "pre_proj" in n:
                p.normal_(0, .1)
    path = export_model(model, tmp_path / "m.onnx", fmt, example=_clip("tadaformer_b16_16f", 2))
    check_export(path, fmt, model, [_clip("tadaformer_b16_16f", 3, seed=4)], rtol=1e-4, atol=1e-5)


def test_check_export_detects_a_different_model(tmp_path):
    model = _model("tada2d_r50_8f")
    path = export_model(model, tmp_path / "m.onnx", "onnx", example=_clip("tada2d_r50_8f", 2))
    with torch.no_grad():
        model.fc.bias.add_(1)
    with pytest.raises(RuntimeError, match="differs from the model"):
        check_export(path, "onnx", model, [_clip("tada2d_r50_8f", 2)])


def test_onnx_opset_is_the_one_asked(tmp_path):
    import onnx

    model = _model("tadaconvnextv2_t_16f")
    path = export_model(model, tmp_path / "m.onnx", "onnx", example=_clip("tadaconvnextv2_t_16f", 2), opset=18)
    opsets = {o.domain: o.version for o in onnx.load(str(path)).opset_import}
    assert opsets[""] == 18


def test_tadaformer_at_another_size_exports_with_both_onnx_exporters(tmp_path):
    """The pos_embed resampling (antialiased bicubic) is not exportable by the TorchScript-based
    exporter: export_model resamples once on a copy; a direct export says what to do."""
    model = _model("tadaformer_b16_16f")  # img_size 32, patch 8: a 4x4 grid
    x = _clip("tadaformer_b16_16f", 2, H=40, W=48)
    for fmt in ("onnx", "onnx-dynamo"):
        path = export_model(model, tmp_path / f"{fmt}.onnx", fmt, example=x)
        check_export(path, fmt, model, [_clip("tadaformer_b16_16f", 3, seed=5, H=40, W=48)], rtol=1e-4, atol=1e-5)
    assert model.grid_size == (4, 4) and model.pos_embed.shape[1] == 17  # the user's model is untouched
    with pytest.raises(RuntimeError, match="set_input_size"):
        torch.onnx.export(model, (x,), str(tmp_path / "direct.onnx"), dynamo=False, opset_version=17)


def test_tadaformer_set_input_size_equals_resampling_per_call():
    model = _model("tadaformer_b16_16f")
    x = _clip("tadaformer_b16_16f", 2, H=40, W=48)
    with torch.no_grad():
        ref = model(x)
        model.set_input_size((40, 48))
        assert model.grid_size == (5, 6) and model.pos_embed.shape[1] == 31
        torch.testing.assert_close(model(x), ref, rtol=0, atol=0)


def test_export_argument_errors(tmp_path):
    model = _model("tada2d_r50_8f")
    with pytest.raises(ValueError, match="format must be one of"):
        export_model(model, tmp_path / "m", "tflite")
    with pytest.raises(ValueError, match="example batch of at least 2"):
        export_model(model, tmp_path / "m.onnx", "onnx", example=_clip("tada2d_r50_8f", 1))
    with pytest.raises(ValueError, match="opset must be >= 17"):
        export_model(model, tmp_path / "m.onnx", "onnx", example=_clip("tada2d_r50_8f", 2), opset=13)
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("name", NAMES)
def test_torch_jit_script_fails_with_a_clear_message(name):
    with pytest.raises(RuntimeError, match="does not support torch.jit.script; use torch.jit.trace, torch.export"):
        torch.jit.script(_model(name))


# ---- torch.compile ----------------------------------------------------------------------------

@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", NAMES)
def test_compile_one_graph_and_no_recompile_for_a_new_batch_size(name, train):
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    model = _model(name).train(train)
    counter = CompileCounter()  # a backend that counts the compiled frames and runs them eagerly
    compiled = torch.compile(model, backend=counter, fullgraph=True)  # fullgraph: a graph break raises
    # as tada_zoo.engine.trainer does; batch sizes with B * T >= 16, as torch's CPU convolution picks
    # its kernel by that threshold (a shape guard of torch, one recompile if it is crossed)
    compiled.register_forward_pre_hook(lambda _, args: torch._dynamo.mark_dynamic(args[0], 0))
    T = FAMILIES[MODELS[name]].input_shape[2]
    for batch in (16 // T, 16 // T + 1, 16 // T + 3):
        x = _clip(name, batch, seed=batch)
        with torch.set_grad_enabled(train):
            torch.manual_seed(0)
            y = compiled(x)
            torch.manual_seed(0)
            ref = model(x)
        torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)
    assert counter.frame_count == 1, f"{counter.frame_count} compilations for 3 batch sizes"
    torch._dynamo.reset()


def test_compile_explain_reports_no_graph_break():
    torch._dynamo.reset()
    model = _model("tadaconvnextv2_t_16f")  # had one break per block (torch.add(out=<view>))
    with torch.no_grad():
        explanation = torch._dynamo.explain(model)(_clip("tadaconvnextv2_t_16f", 2))
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1, explanation.break_reasons
    torch._dynamo.reset()


# ---- memory format --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_channels_last_3d(name):
    model = _model(name)
    x = _clip(name, 2)
    with torch.no_grad():
        ref = model(x)
        assert model.to(memory_format=torch.channels_last_3d) is model
        params = list(model.parameters())
        assert all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in params if p.dim() == 5)
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in params if p.dim() == 4)
        torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last_3d)), ref,
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-5)
        model.to(torch.float64)  # other conversions are nn.Module.to's
        assert model.get_classifier().weight.dtype == torch.float64


# ---- FX -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES + ["tadaformer_b16_16f.ssv2"])
def test_fx_symbolic_trace_and_feature_extractor(name):
    from torchvision.models.feature_extraction import create_feature_extractor

    arch = name.split(".")[0]
    # the SSV2 TAdaFormer: TemporalLinear pre_proj and a second TAda branch per block
    model = _model(arch, **(dict(temporal_kernel=3, double_tada=True) if name.endswith("ssv2") else {}))
    x = _clip(arch, 2)
    with torch.no_grad():
        torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), model(x), rtol=0, atol=0)
        nodes = [info["module"] for info in model.feature_info]
        extractor = create_feature_extractor(model, return_nodes=nodes)
        got = extractor(x)
        outputs = {}
        handles = [model.get_submodule(n).register_forward_hook(
            lambda m, i, o, n=n: outputs.__setitem__(n, o)) for n in nodes]
        model(x)
        for h in handles:
            h.remove()
    assert list(got) == nodes
    for n in nodes:
        torch.testing.assert_close(got[n], outputs[n], rtol=0, atol=0)


def test_fx_traced_training_graph_matches_eager():
    model = _model("r2plus1d_r50_8f_tada2d1d").train()
    traced = torch.fx.symbolic_trace(model)
    x = _clip("r2plus1d_r50_8f_tada2d1d", 2)
    torch.manual_seed(0)
    a = traced(x)
    a.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    torch.manual_seed(0)
    b = model(x)
    b.sum().backward()
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-6, atol=1e-7, msg=n)


# ---- eager errors are kept ----------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_bad_input_still_gives_the_shape_error(name):
    model = _model(name)
    x = _clip(name, 2)
    with pytest.raises(ValueError, match="expected a 5D video tensor"):
        model(x[:, :, 0])
    with pytest.raises(ValueError, match="expected 3 channels"):
        model(x[:, :2])


@pytest.mark.parametrize("name, shape, message", [
    ("slowfast_r50_8x8_tada", dict(T=6), "positive multiple of alpha"),
    ("tadaconvnextv2_t_16f", dict(H=3), "H and W must be >= 4"),
    ("tadaformer_b16_16f", dict(H=4, W=4), "smaller than one 8x8 patch"),
])
def test_family_input_checks_still_raise(name, shape, message):
    with pytest.raises(ValueError, match=message):
        _model(name)(_clip(name, 2, **shape))


# ---- command line ---------------------------------------------------------------------------------

def test_cli_export_end_to_end(tmp_path, capsys):
    from tada_zoo.cli import main

    kwargs = json.dumps(FAMILIES["VideoResNet"].kwargs)
    out = tmp_path / "tada2d.onnx"
    rc = main(["export", "--model", "tada2d_r50_8f", "--model-kwargs", kwargs, "--num-classes", "5",
               "--format", "onnx", "--output", str(out), "--frames", "4", "--size", "32", "--check"])
    text = capsys.readouterr().out
    assert rc == 0 and out.is_file(), text
    assert "batch dynamic" in text and "outputs match the model at batch 2, 3" in text

    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "video"
    y = session.run(None, {"video": torch.randn(4, 3, 4, 32, 32).numpy()})[0]
    assert y.shape == (4, 5)

    rc = main(["export", "--model", "tada2d_r50_8f", "--output", str(tmp_path / "b.onnx"), "--batch", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.count("\n") == 0 and "--batch must be >= 2" in err
    rc = main(["export", "--model", "tada2d_r50_8f", "--output", str(tmp_path / "b.onnx"), "--opset", "13"])
    assert rc == 1 and "--opset must be >= 17" in capsys.readouterr().err
