"""The one ResNet bottleneck: both layouts compute the same block, and every middle is built from parts."""
import pytest
import torch

from tada_zoo.models._resnet import Bottleneck, make_stage


def _randomized(module: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for k, v in module.state_dict().items():
            if v.is_floating_point():
                v.copy_((v.abs() + 0.5 if "running_var" in k else v) + 0.1 * torch.randn(v.shape, generator=g))
    return module


@pytest.mark.parametrize("tada", [(), ("2d",)])
@pytest.mark.parametrize("train", [False, True])
def test_frame_major_block_equals_conv3d_block(tada, train):
    """TSN / TAda2D's 2D block on frame-major clips == the (B, C, T, H, W) block with the same weights."""
    torch.manual_seed(0)
    frames = make_stage(16, 8, 2, 2, [0., 0.], frames=True, tada=tada)
    clips = make_stage(16, 8, 2, 2, [0., 0.], frames=False, tada=tada)
    _randomized(frames)
    assert list(frames.state_dict()) == list(clips.state_dict())
    clips.load_state_dict({k: v.reshape(clips.state_dict()[k].shape) for k, v in frames.state_dict().items()})
    frames.train(train), clips.train(train)
    x = torch.randn(2, 16, 4, 12, 12)
    y_frames = frames(x.transpose(1, 2).contiguous()).transpose(1, 2)
    torch.testing.assert_close(y_frames, clips(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mid, tada, keys", [
    ("2d", (), {"conv2", "bn2"}),
    ("2d", ("2d",), {"conv2", "conv2_rf", "agg2"}),
    ("2+1d", ("1d",), {"conv2", "bn2", "conv2t", "conv2t_rf", "bn2t"}),
    ("3d", ("3d",), {"conv2", "conv2_rf", "bn2"}),
])
def test_middle_parts_and_identity_init(mid, tada, keys):
    """A TAda middle starts equal to the plain one (alpha = 1, zero aggregation BN)."""
    plain = _randomized(Bottleneck(32, 8, frames=False, mid=mid)).eval()
    block = Bottleneck(32, 8, frames=False, mid=mid, tada=tada).eval()
    names = {n.split(".")[0] for n in block.state_dict() if n.startswith(("conv2", "bn2", "agg2"))}
    assert names == keys
    state = {k.replace("agg2.norm.", "bn2."): v for k, v in block.state_dict().items()}
    sources = {k: v for k, v in plain.state_dict().items()}
    block.load_state_dict({k: sources[state_k].reshape(v.shape) if state_k in sources else v
                           for (k, v), state_k in zip(block.state_dict().items(), state)})
    x = torch.randn(1, 32, 4, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(block(x.clone()), plain(x.clone()), atol=1e-5, rtol=1e-5)


def test_bad_blocks():
    with pytest.raises(ValueError, match="tada parts \\['3d'\\] do not exist"):
        Bottleneck(8, 2, mid="2d", tada=("3d",))
    with pytest.raises(ValueError, match="2D convs only"):
        Bottleneck(8, 2, frames=True, mid="3d")
    with pytest.raises(ValueError, match="mid must be one of"):
        Bottleneck(8, 2, mid="4d")
