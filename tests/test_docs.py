"""Every ``python`` and ``bash`` block of README.md and docs/*.md runs as written, so the docs
cannot drift from the code.

The blocks of one file run in order in one scratch folder, as a reader would run them (its
Python blocks in one session, so a later block may use an earlier one's names), next to
what a user would have: ``videos/<class>/*.mp4`` (small synthetic videos) and the original
checkpoints the docs name (original-format files with deterministic weights). An HTML comment
right above a block, invisible to readers, adjusts how it runs:

    <!-- docs-test: skip WHY -->        not run (e.g. needs the network, a GPU, 8 processes)
    <!-- docs-test: env NAME=VALUE -->  extra environment for this (bash) block
    <!-- docs-test: sub OLD => NEW -->  run the block with OLD replaced (e.g. fewer epochs)

``TADA_ZOO_DOCS_CROP`` (tests/docs_env/sitecustomize.py) makes the data pipeline feed small
crops, so the full-size models of the docs train and evaluate in seconds.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
ENV_DIR = Path(__file__).resolve().parent / "docs_env"
BLOCK_TIMEOUT = 3600  # guards a hang only: generous, so a correct block on a loaded machine never hits it
_FENCE = re.compile(r"^```(\w*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*docs-test:\s*(skip|env|sub)\b(.*?)-->\s*$")


class Block(NamedTuple):
    lang: str
    line: int  # 1-based line of the opening fence
    code: str
    skip: str  # why it is not run ("" = run)
    env: dict


def read_blocks(path: Path) -> List[Block]:
    """The fenced blocks of a markdown file with their directives; raises on an unclosed fence
    or a directive that precedes no block."""
    blocks, pending, lines = [], [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        directive = _DIRECTIVE.match(lines[i].strip())
        fence = _FENCE.match(lines[i])
        if directive:
            pending.append((directive.group(1), directive.group(2).strip(), i + 1))
        elif fence:
            start, body = i, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise ValueError(f"{path.name}:{start + 1}: unclosed code fence")
            skip = " ".join(arg for kind, arg, _ in pending if kind == "skip")
            env = dict(kv.split("=", 1) for kind, arg, _ in pending if kind == "env" for kv in arg.split())
            code = "\n".join(body) + "\n"
            for kind, arg, line in pending:
                if kind == "sub":
                    old, sep, new = arg.partition(" => ")
                    if not sep or old not in code:
                        raise ValueError(f"{path.name}:{line}: 'docs-test: sub OLD => NEW' whose OLD is not in the block")
                    code = code.replace(old, new)
            if any(kind == "skip" and not arg for kind, arg, _ in pending):
                raise ValueError(f"{path.name}:{start + 1}: 'docs-test: skip' needs a reason")
            blocks.append(Block(fence.group(1), start + 1, code, skip, env))
            pending = []
        elif lines[i].strip() and pending:
            raise ValueError(f"{path.name}:{pending[0][2]}: docs-test directive not followed by a code block")
        i += 1
    return blocks


def runnable(path: Path) -> List[Block]:
    return [b for b in read_blocks(path) if b.lang in ("python", "bash")]


def test_every_doc_block_has_a_language():
    """A block without a language would silently escape this test."""
    bare = [f"{p.relative_to(ROOT)}:{b.line}" for p in DOCS for b in read_blocks(p) if not b.lang]
    assert not bare, f"code blocks without a language (use python, bash or text): {bare}"


def test_directive_parser_catches_mistakes(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("<!-- docs-test: skip -->\n```bash\necho\n```\n")
    with pytest.raises(ValueError, match="needs a reason"):
        read_blocks(doc)
    doc.write_text("<!-- docs-test: env A=1 -->\ntext\n```bash\necho\n```\n")
    with pytest.raises(ValueError, match="not followed by a code block"):
        read_blocks(doc)
    doc.write_text("```python\nx = 1\n")
    with pytest.raises(ValueError, match="unclosed"):
        read_blocks(doc)
    doc.write_text("<!-- docs-test: sub x => y -->\n```bash\necho z\n```\n")
    with pytest.raises(ValueError, match="OLD is not in the block"):
        read_blocks(doc)
    doc.write_text("<!-- docs-test: env A=1 B=2 -->\n<!-- docs-test: sub --epochs 10 => --epochs 1 -->\n"
                   "```bash\ntrain --epochs 10\n```\n```python\npass\n```\n")
    a, b = read_blocks(doc)
    assert (a.env, b.env, a.line, b.line, a.code) == ({"A": "1", "B": "2"}, {}, 3, 6, "train --epochs 1\n")


@pytest.fixture(scope="session")
def user_files(tmp_path_factory, reference):
    """What a reader of the docs has: class folders of videos and original checkpoints."""
    from tada_zoo.data.synthetic import CLASS_NAMES, moving_shape_clip, write_video
    import numpy as np
    import torch

    root = tmp_path_factory.mktemp("user_files")
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASS_NAMES):
        for i in range(3):
            write_video(root / "videos" / name / f"{name}_{i}.mp4", moving_shape_clip(label, 24, 48, rng), 30)
    for clip in ("my_clip.mp4", "clip.mp4"):
        write_video(root / clip, moving_shape_clip(0, 24, 48, rng), 30)
    # the TAda2D K400 original downloaded, and it and the SSV2 one in the weights folder
    cache = root / "home" / ".cache" / "tada_zoo"
    for folder in (root / "home" / "Downloads", cache):
        folder.mkdir(parents=True)
        torch.save(reference("tada2d_r50_k400").checkpoint(), folder / "tada2d_8x8_k400.pyth")
    torch.save(reference("tada2d_r50_ssv2").checkpoint(), cache / "tada2d_8f_ssv2.pyth")
    torch.save(reference("tadaconvnextv2_tiny_k400").checkpoint(), cache / "tadaconvnextv2_tiny_k400_16f.pyth")
    os.symlink(root / "home" / "Downloads" / "tada2d_8x8_k400.pyth", root / "tada2d_8x8_k400.pyth")
    return root


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_doc_blocks_run(doc, user_files, tmp_path):
    blocks = runnable(doc)
    if not blocks:
        pytest.skip(f"{doc.name} has no python or bash blocks")
    work = tmp_path / "work"
    shutil.copytree(user_files, work, copy_function=os.symlink)  # inputs are read, never written
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ENV_DIR), os.environ.get("PYTHONPATH", "")]),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
               TADA_ZOO_DOCS_CROP="32", HOME=str(work / "home"), HF_HUB_OFFLINE="1",
               HF_HOME=str(tmp_path / "hf"), MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    env.pop("TADA_ZOO_HOME", None)  # the docs' weights folder: ~/.cache/tada_zoo of this HOME
    ran, session = 0, None
    try:
        for n, block in enumerate(blocks):
            if block.skip:
                continue
            script = work / f".block{n}.{'py' if block.lang == 'python' else 'sh'}"
            script.write_text(block.code)
            if block.lang == "python":  # one Python session per page, as a reader runs it
                if session is None:
                    session = subprocess.Popen([sys.executable, "-u", str(ENV_DIR / "run_blocks.py")], cwd=work,
                                               env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT, text=True)
                ok, out = _run_in_session(session, script)
            else:
                proc = subprocess.run(["bash", "-euo", "pipefail", script.name], cwd=work,
                                      env=dict(env, **block.env), capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
                ok, out = proc.returncode == 0, proc.stdout + proc.stderr
            if not ok:
                pytest.fail(f"{doc.relative_to(ROOT)}:{block.line}: {block.lang} block failed:\n{block.code}\n"
                            f"--- output ---\n{out[-3000:]}")
            ran += 1
    finally:
        if session is not None:
            session.stdin.close()
            session.kill()
            session.wait()
    assert ran, f"{doc.name}: every block is skipped"


def _run_in_session(session: subprocess.Popen, script: Path):
    """Runs one block file in the page's Python session; (ok, its output)."""
    session.stdin.write(f"{script}\n")
    session.stdin.flush()
    out = []
    for line in session.stdout:
        if line.startswith("@@docs-test@@ "):
            reply = line[len("@@docs-test@@ "):].strip()
            if reply == "ok":
                return True, "".join(out)
            return False, "".join(out) + json.loads(reply[len("error "):])
        out.append(line)
    return False, "".join(out) + f"\n(the Python session exited with {session.wait()})"


def _expand(pattern: str) -> List[List[str]]:
    """``a_{x,y}_{1,2}`` -> [[a_x_1, a_y_1], ...]: names varying the first brace group (the others
    at their first option)."""
    groups = re.findall(r"\{([^}]*)\}", pattern)
    if not groups:
        return [[pattern]]
    first = groups[0].split(",")
    rest = re.sub(r"\{([^}]*)\}", lambda m: m.group(1).split(",")[0], pattern.split("}", 1)[1])
    return [[pattern.split("{", 1)[0] + option + rest for option in first]]


def _suffixed(base: str, token: str) -> str:
    """A table's ``_tada`` after ``slowonly_r50_8x8`` appends; its ``_32f`` after
    ``tadaconvnext_t_16f`` replaces the last part (whichever names a registered model)."""
    import timm

    import tada_zoo  # noqa: F401

    if not token.startswith("_"):
        return token
    return base + token if timm.is_model(base + token) else base.rsplit("_", 1)[0] + token


def readme_param_claims():
    """(model name, params in millions as the README's model table states them)."""
    claims = []
    for row in (ROOT / "README.md").read_text().splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[1].startswith("`") or not re.search(r"\d", cells[2]):
            continue
        tokens = re.findall(r"`([^`]+)`", cells[1])
        numbers = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", cells[2])]
        base = _expand(tokens[0])[0]
        names = [base[0]] + [_suffixed(base[0], t) for t in tokens[1:]]
        if len(numbers) == 1:
            claims += [(n, numbers[0]) for n in names + base[1:]]
        elif len(numbers) == len(tokens):
            claims += list(zip(names, numbers))
        else:
            assert len(numbers) == len(base), f"README row {row!r}: {len(numbers)} figures for {base}"
            claims += list(zip(base, numbers))
    return claims


def test_readme_parameter_counts_are_the_models():
    """The README's params column (400-way heads) is what the registered models have."""
    import timm
    import torch

    import tada_zoo  # noqa: F401

    claims = readme_param_claims()
    assert len(claims) >= 15, claims
    wrong = []
    for name, millions in claims:
        with torch.device("meta"):
            model = timm.create_model(name, num_classes=400)
        actual = sum(p.numel() for p in model.parameters()) / 1e6
        if round(actual, 1) != millions:
            wrong.append(f"{name}: README {millions}M, model {actual:.3f}M")
    assert not wrong, wrong


def test_docs_hold_on_a_plain_clone():
    """No page points into ../shared (a clone has none), and every ``arch.tag`` a page names is registered."""
    import timm

    import tada_zoo  # noqa: F401

    bad = []
    for doc in DOCS:
        text = doc.read_text()
        if "../shared" in text:
            bad.append(f"{doc.name}: points to ../shared")
        for name in set(re.findall(r"\b([a-z][a-z0-9_]*_\d+f?[a-z0-9_]*)\.([a-z][a-z0-9_]*)\b", text)):
            arch, tag = name
            if timm.is_model(arch) and f"{arch}.{tag}" not in timm.list_pretrained(f"{arch}.*"):
                bad.append(f"{doc.name}: {arch}.{tag} is not a registered tag")
    assert not bad, bad
