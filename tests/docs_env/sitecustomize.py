"""Loaded by every Python process the docs test starts (tests/test_docs.py puts this folder on
PYTHONPATH). With ``TADA_ZOO_DOCS_CROP=N`` the data pipeline feeds N-pixel crops instead of the
model's own (224 / 256), so that the docs' full-size models train and evaluate in seconds on a
CPU; nothing else changes: the commands, models, weights and files are the real ones."""
import importlib.abc
import importlib.util
import os
import sys

_CROP = os.environ.get("TADA_ZOO_DOCS_CROP")


def _shrink(protocol_module):
    cls = protocol_module.DataProtocol
    post_init = cls.__post_init__
    crop = int(_CROP)

    def small_post_init(self):
        post_init(self)
        f = crop / self.train_crop
        small = dict(train_crop=crop, test_crop=max(1, round(self.test_crop * f)),
                     test_short_side=max(1, round(self.test_short_side * f)))
        if max(self.train_scale) > 1:
            small["train_scale"] = tuple(max(1, round(v * f)) for v in self.train_scale)
        for key, value in small.items():
            object.__setattr__(self, key, value)

    cls.__post_init__ = small_post_init


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches ``tada_zoo.data.protocol`` right after it is first imported."""

    def find_spec(self, name, path, target=None):
        if name != "tada_zoo.data.protocol":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        sys.meta_path.insert(0, self)
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _shrink(module)

        loader.exec_module = exec_and_patch
        return spec


if _CROP:
    sys.meta_path.insert(0, _PatchOnImport())
