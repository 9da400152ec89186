"""What the original TAdaConv code returned, recorded by conversion/record_original_pipeline.py.

The recorder's own ``pattern_clip`` and ``clip_digest`` are used here, so that tests feed our
code exactly the frames the original was fed.
"""
import gzip
import importlib.util
import json
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "fixtures" / "original_pipeline_cases.json.gz"

_spec = importlib.util.spec_from_file_location("record_original_pipeline",
                                               ROOT / "conversion" / "record_original_pipeline.py")
recorder = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(recorder)
pattern_clip, clip_digest = recorder.pattern_clip, recorder.clip_digest


@lru_cache()
def original_cases() -> dict:
    with gzip.open(CASES, "rt") as f:
        return json.load(f)
