"""temporal_sum / temporal_pool (shifted-add implementation) against an explicit zero-padded sum."""
import pytest
import torch
import torch.nn.functional as F

from tada_zoo.layers import temporal_pool, temporal_sum


@pytest.mark.parametrize("T", [1, 2, 3, 8])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_matches_padded_window_sum(T, k):
    x = torch.randn(2, T, 3, 4, 5)
    xp = F.pad(x, (0, 0, 0, 0, 0, 0, k // 2, k // 2))
    ref = sum(xp[:, i:i + T] for i in range(k))
    torch.testing.assert_close(temporal_sum(x, k), ref)
    torch.testing.assert_close(temporal_pool(x, k), ref / k)
    # channels-last trailing layout (what TAdaConvNeXt passes) gives the same numbers
    torch.testing.assert_close(temporal_sum(x.permute(0, 1, 3, 4, 2), k), ref.permute(0, 1, 3, 4, 2))


def test_gradient_and_bad_kernel():
    x = torch.randn(1, 5, 2, requires_grad=True)
    temporal_sum(x, 3).sum().backward()
    assert x.grad[0, :, 0].tolist() == [2, 3, 3, 3, 2]  # edge frames see one zero pad
    with pytest.raises(ValueError, match="odd"):
        temporal_sum(x, 2)
