"""QuickGELU MLP (OpenAI CLIP's activation) with a single fused activation kernel."""
import torch
import torch.nn.functional as F
from timm.layers import Mlp
from timm.layers.activations import QuickGELU

from ._derived import derived


class QuickGELUMlp(Mlp):
    """timm's ``Mlp`` with QuickGELU ``x * sigmoid(1.702 x)``, computed as ``silu(1.702 x) / 1.702``.

    The two scalings ride on the GEMMs (``addmm``'s alpha at inference, the small weights
    under autograd), leaving one fused SiLU kernel instead of QuickGELU's three elementwise
    passes over the widest tensor of the block (~5 % of a CLIP ViT's CPU time). Same parameters, names
    and function as ``Mlp(act_layer=QuickGELU)``, up to float rounding; it takes ``Mlp``'s
    arguments (so it can be a timm ``Block``'s ``mlp_layer``) except ``act_layer``, which
    must be QuickGELU if given, and a hidden ``norm_layer``, which would sit between the
    activation and ``fc2``'s scaling.
    """
    scale = 1.702

    def __init__(self, in_features: int, hidden_features: int = None, act_layer=QuickGELU, norm_layer=None,
                 **kwargs):
        if act_layer is not QuickGELU:
            raise ValueError(f"QuickGELUMlp computes QuickGELU; got act_layer={act_layer!r}")
        if norm_layer is not None:
            raise ValueError("QuickGELUMlp does not support a hidden norm_layer")
        super().__init__(in_features, hidden_features, act_layer=QuickGELU, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale
        if torch.is_grad_enabled():
            h = self._drop(self.drop1, self._hidden_autograd(x))
            return self._drop(self.drop2, F.linear(h, self.fc2.weight / s, self.fc2.bias))
        rows = x.reshape(-1, x.shape[-1])
        # GEMM's alpha / beta apply the scalings: no scaled copy of the weights or bias, no extra pass
        b1 = torch.zeros((), dtype=x.dtype, device=x.device) if self.fc1.bias is None else self.fc1.bias
        h = self._drop(self.drop1, F.silu(torch.addmm(b1, rows, self.fc1.weight.t(), beta=s, alpha=s), inplace=True))
        b2 = torch.zeros((), dtype=x.dtype, device=x.device) if self.fc2.bias is None else self.fc2.bias
        y = torch.addmm(b2, h, self.fc2.weight.t(), alpha=1 / s)
        return self._drop(self.drop2, y).view(x.shape[:-1] + (-1,))

    def forward_residual(self, x: torch.Tensor, shortcut: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """``shortcut + gamma * self(x)`` in fewer dispatched ops: the ``1 / s`` in the residual's
        ``addcmul`` (``fc2``'s bias scaled by ``s`` to match); without autograd also N-D ``linear``
        (no 2D reshape, no transposed weight views) and ``silu(s * h)`` in place."""
        if self.training and (self.drop1.p > 0 or self.drop2.p > 0):
            return torch.addcmul(shortcut, self(x), gamma)
        s = self.scale
        b2 = None if self.fc2.bias is None else derived(self, "fc2_bias", lambda: self.fc2.bias * s, self.fc2.bias)
        if torch.is_grad_enabled():
            h = self._hidden_autograd(x)
        else:
            h = F.silu(F.linear(x, self.fc1.weight, self.fc1.bias).mul_(s), inplace=True)
        return torch.addcmul(shortcut, F.linear(h, self.fc2.weight, b2), gamma, value=1 / s)

    def _hidden_autograd(self, x: torch.Tensor) -> torch.Tensor:
        """``silu(s * fc1(x))`` for autograd, with no in-place op on its graph: ``silu_`` would make it
        save a copy of its input, and ``mul_`` on the N-D linear's output (a view) would copy the
        whole base back in the backward pass; GEMM alpha / beta would cost a scaling pass of each
        gradient there. Scaling fc1's (small) weight and bias is the cheap way, both ways."""
        s = self.scale
        b1 = None if self.fc1.bias is None else self.fc1.bias * s
        return F.silu(F.linear(x, self.fc1.weight * s, b1))

    def _drop(self, drop, x: torch.Tensor) -> torch.Tensor:
        """``drop(x)``, skipped where it is the identity (eval, ``p == 0``): one dispatched op less."""
        return drop(x) if self.training and getattr(drop, "p", 1.) > 0 else x
