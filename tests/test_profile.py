"""`tada-zoo profile` prints the paper's figures."""
import re
import subprocess
import sys

from tada_zoo.cli import main


def test_profile_cli_prints_params_and_gflops(capsys):
    assert main(["profile", "--model", "tada2d_r50_8f", "--size", "256", "--num-classes", "400"]) == 0
    out = capsys.readouterr().out
    assert "input:  1x3x8x256x256" in out
    params = float(re.search(r"params: ([\d.]+)M", out)[1])
    gflops = float(re.search(r"GFLOPs: ([\d.]+)", out)[1])
    assert abs(params - 27.5) / 27.5 < 0.02 and abs(gflops - 43) / 43 < 0.02


def test_profile_frames_override(capsys):
    assert main(["profile", "--model", "tsn_r50_16f", "--frames", "2", "--size", "64"]) == 0
    assert "input:  1x3x2x64x64" in capsys.readouterr().out


def test_unknown_model_is_a_clear_error():
    r = subprocess.run([sys.executable, "-m", "tada_zoo.cli", "profile", "--model", "nope_8f"],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "unknown model 'nope_8f'" in r.stderr and "tada2d_r50_8f" in r.stderr
