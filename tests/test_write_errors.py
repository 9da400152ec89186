"""Writes that fail say which file and why, in one line, and leave nothing half-written (issue 22)."""
import errno
import os
import subprocess
from pathlib import Path

import pytest
import torch

from tada_zoo._files import WriteError, atomic_write, check_writable
from tada_zoo.engine.checkpoint import atomic_save, save_safetensors


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 256 KiB file system (tmpfs; needs root, as CI and this machine have)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)  # lazily: a failed torch.save may hold its file a while


big = {"w": torch.zeros(1 << 18)}  # 1 MiB


@pytest.mark.parametrize("save", [
    lambda path: atomic_save(big, path),  # torch.save: "unexpected pos" when the disk fills
    lambda path: save_safetensors(big, path),  # safetensors: SafetensorError
    lambda path: atomic_write(path, lambda tmp: Path(tmp).write_bytes(b"x" * (1 << 20))),  # OSError ENOSPC
])
def test_disk_full_names_the_file_and_says_full(tiny_disk, save):
    target = tiny_disk / "run" / "last.pt"
    with pytest.raises(WriteError, match=rf"cannot write {target}: the disk is full") as e:
        save(target)
    assert e.value.errno == errno.ENOSPC and "\n" not in str(e.value)
    assert list((tiny_disk / "run").iterdir()) == []  # no temp file, no half file


def test_permission_and_odd_errors(tmp_path, monkeypatch):
    monkeypatch.setattr("tada_zoo.models._files._free", lambda folder: 1 << 40)
    with pytest.raises(WriteError, match=r"cannot write .*x.bin: permission denied"):
        atomic_write(tmp_path / "x.bin", lambda tmp: (_ for _ in ()).throw(PermissionError(errno.EACCES, "no")))
    with pytest.raises(ValueError, match="^the writer's own$"):  # not a write problem: as it is
        atomic_write(tmp_path / "y.bin", lambda tmp: (_ for _ in ()).throw(ValueError("the writer's own")))
    assert not list(tmp_path.iterdir())


def test_check_writable(tmp_path):
    assert check_writable(tmp_path / "new" / "dir", "--output") == tmp_path / "new" / "dir"
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match=r"--output .*file is a file, not a folder"):
        check_writable(tmp_path / "file", "--output")
    if os.geteuid() == 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)]).returncode == 0:
            try:
                with pytest.raises(WriteError, match=r"--output .*ro cannot be written to \(read-only file system\)"):
                    check_writable(ro, "--output")
            finally:
                subprocess.run(["umount", str(ro)], check=True)
