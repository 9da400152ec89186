"""torch.fx symbolic tracing support (torchvision ``create_feature_extractor``, timm ``feature_cls='fx'``).

FX traces with proxies that have no shapes, so Python code that branches or loops on a
shape cannot be traced. Two decorators cover the two kinds of such code:

* ``fx_check``: an input check; FX tracing skips it (the traced graph has no Python checks,
  eager calls keep their clear errors);
* ``fx_leaf``: a function whose loops depend on shapes; FX records it as one call, which
  runs the Python function on real tensors.

Unlike ``torch.fx.wrap``, which patches one module's globals, these work wherever the
function is imported. Eager mode, torch.compile, torch.export and ONNX export run the
function itself.
"""
import functools

import torch

__all__ = ["fx_check", "fx_leaf"]


def _proxy(args, kwargs):
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.fx.Proxy):
            return a
        if isinstance(a, (tuple, list)):
            for b in a:
                if isinstance(b, torch.fx.Proxy):
                    return b
    return None


def fx_check(fn):
    """An input check that FX tracing skips (it returns None)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if _proxy(args, kwargs) is not None:
            return None
        return fn(*args, **kwargs)
    return wrapper


def fx_leaf(fn):
    """A function FX traces as one ``call_function`` node (a module-level function: FX
    must be able to name it in the generated code)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        proxy = _proxy(args, kwargs)
        if proxy is not None:
            return proxy.tracer.create_proxy("call_function", fn, args, kwargs)
        return fn(*args, **kwargs)
    return wrapper
