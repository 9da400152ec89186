"""WebDataset shards: videos packed, with their labels, into numbered tar files, and read back.

Reading millions of small files is slow on network file systems and object stores; a few
large sequential tars are not. ``write_shards`` packs an annotation list into
``OUT/<prefix>-000000.tar, ...`` of at most ``max_size`` bytes each: every sample is the
video's original bytes (``<key>.<ext>``), ``<key>.cls`` (single-label lists) and
``<key>.json`` (label(s), relative path, class name, row in the list, sha256). The plan
(which video goes into which shard) depends only on the list, the file sizes and
``max_size``; ``OUT/index.json`` records it with the counts. Packing resumes: a shard
file exists only once complete (temp file + rename), so a rerun writes the missing ones.

``ShardDataset`` reads them back through the same ``VideoDataset`` sampling and transforms
(the bytes go to the PyAV reader in memory), so clips equal the files' clips. Shards are
dealt to the (rank, loader worker) slots: slot ``s`` of ``S`` reads shards ``s, s + S, ...``,
so in evaluation every video is read exactly once in all (some slots may get fewer shards or
none) and the scores are summed over ranks (``engine.metrics.collect_scores`` checks the
count). Training shuffles the shard order by ``(seed, epoch)`` and the samples in a buffer
seeded by ``(seed, epoch, slot)``: an epoch depends on nothing before it, so a run resumed
from epoch ``e``'s checkpoint continues with epoch ``e + 1`` exactly as an unbroken run.
"""
import hashlib
import importlib
import io
import json
import os
import posixpath
import random
import re
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import urlparse

import torch
from torch.utils.data import IterableDataset, get_worker_info

from tada_zoo._files import atomic_write, check_writable, write_text

from .decode import VideoDecodeError

__all__ = ["parse_size", "plan_shards", "write_shards", "read_shard_index", "ShardSet", "ShardDataset",
           "iter_shard_samples", "INSTALL_HINT"]

INSTALL_HINT = "--shards needs the webdataset package: pip install 'tada-zoo[shards]'"
INDEX = "index.json"
FORMAT = "tada-zoo-shards/1"
_BLOCK, _RECORD = 512, 10240  # tar blocks; tarfile pads an archive to whole records
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000 ** 2, "g": 1000 ** 3, "t": 1000 ** 4}


def parse_size(text: str) -> int:
    """``"1GB"`` -> 10**9 bytes (``KB/MB/GB/TB`` powers of 1000, ``KiB/MiB/GiB`` of 1024, plain bytes)."""
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"expected a size such as 1GB, 500MB or 2GiB, got {text!r}")
    unit = m.group(2) or ""
    scale = _UNITS[unit[:1].lower()] if unit.lower() != "b" else 1
    if "i" in unit.lower():
        scale = 1024 ** (" kmgt".index(unit[0].lower()))
    size = int(float(m.group(1)) * scale)
    if size < _RECORD:
        raise ValueError(f"a shard size must be at least {_RECORD} bytes (one tar record), got {text!r}")
    return size


# ---- packing -----------------------------------------------------------------------------------------

def _member(size: int) -> int:
    return _BLOCK + -(-size // _BLOCK) * _BLOCK  # header + data padded to whole blocks


def _tar_size(members: int) -> int:
    return -(-(members + 2 * _BLOCK) // _RECORD) * _RECORD  # two zero blocks, then whole records


def _key(index: int) -> str:
    return f"{index:09d}"


def _ext(path: str) -> str:
    ext = posixpath.splitext(path)[1].lower().lstrip(".")
    return ext if ext and ext.isalnum() and ext not in ("json", "cls") else "video"


def _meta(index: int, path: str, label, class_name: Optional[str], sha256: str) -> bytes:
    return json.dumps(dict(index=index, path=path, label=list(label) if isinstance(label, tuple) else label,
                           class_name=class_name, ext=_ext(path), sha256=sha256)).encode("utf-8")


def _members(index: int, path: str, label, class_name, size: int) -> Dict[str, int]:
    """Name -> size of a sample's tar members (the sha256 placeholder has the real one's length)."""
    out = {f"{_key(index)}.{_ext(path)}": size,
           f"{_key(index)}.json": len(_meta(index, path, label, class_name, "0" * 64))}
    if not isinstance(label, tuple):
        out[f"{_key(index)}.cls"] = len(str(label))
    return out


def plan_shards(samples: Sequence[Tuple[str, object]], data_root, max_size: int,
                class_names: Optional[Sequence[str]] = None) -> List[List[int]]:
    """Sample indices per shard, in list order, each shard at most ``max_size`` bytes as written
    (a video larger than that alone in its shard). Missing videos are an error naming them."""
    shards, current, used = [], [], 0
    for i, (path, label) in enumerate(samples):
        file = os.path.join(os.fspath(data_root), path)
        if not os.path.isfile(file):
            raise FileNotFoundError(f"video {file} (entry {i + 1} of the list) is missing or not a file")
        name = class_names[label] if class_names is not None and isinstance(label, int) else None
        size = sum(_member(s) for s in _members(i, path, label, name, os.path.getsize(file)).values())
        if current and _tar_size(used + size) > max_size:
            shards.append(current)
            current, used = [], 0
        current.append(i)
        used += size
    return shards + [current] if current else shards


class _Hashing:
    """A file read through, hashed on the way (one read of each video)."""

    def __init__(self, f):
        self.f, self.sha = f, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.sha.update(data)
        return data


def _write_tar(tmp: str, members: List[Tuple[int, str, object, Optional[str], str]]) -> None:
    """One shard: for each sample its video's bytes untouched, then its ``.json`` and ``.cls``."""
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for index, path, label, class_name, file in members:
            def add(name: str, size: int, fileobj):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = size, 0o444, 0
                tar.addfile(info, fileobj)

            size = os.path.getsize(file)
            with open(file, "rb") as f:
                hashing = _Hashing(f)
                try:
                    add(f"{_key(index)}.{_ext(path)}", size, hashing)
                except OSError as e:  # tarfile's "unexpected end of data": the file shrank
                    raise OSError(f"video {file} changed while it was packed ({e})") from None
            meta = _meta(index, path, label, class_name, hashing.sha.hexdigest())
            add(f"{_key(index)}.json", len(meta), io.BytesIO(meta))
            if not isinstance(label, tuple):
                add(f"{_key(index)}.cls", len(str(label)), io.BytesIO(str(label).encode()))


def _check_output(output: Path, prefix: str) -> None:
    """OUT may hold only this packing's files; stale temp files of a killed run are removed."""
    shard = re.compile(rf"^{re.escape(prefix)}-\d{{6}}\.tar$")
    temp = re.compile(rf"^\.({re.escape(prefix)}-\d{{6}}\.tar|{re.escape(INDEX)})\..*\.tmp$")
    other = []
    for entry in sorted(os.listdir(output)):
        if temp.match(entry):
            os.unlink(output / entry)
        elif entry != INDEX and not shard.match(entry):
            other.append(entry)
    if other:
        raise ValueError(f"--output {output} holds other files ({', '.join(other[:3])}"
                         f"{', ...' if len(other) > 3 else ''}); pack into an empty folder or one tada-zoo shard "
                         f"made with --prefix {prefix}")


def _index(samples, plan, max_size: int, prefix: str, class_names, sizes: List[int]) -> dict:
    shard_of = {i: k for k, members in enumerate(plan) for i in members}
    return dict(format=FORMAT, prefix=prefix, max_size=max_size, num_samples=len(samples),
                class_names=list(class_names) if class_names is not None else None,
                shards=[dict(name=f"{prefix}-{k:06d}.tar", count=len(m), size=s)
                        for k, (m, s) in enumerate(zip(plan, sizes))],
                samples=[dict(path=p, label=list(lb) if isinstance(lb, tuple) else lb,
                              shard=f"{prefix}-{shard_of[i]:06d}.tar") for i, (p, lb) in enumerate(samples)])


def write_shards(samples: Sequence[Tuple[str, object]], data_root, output, max_size: int, prefix: str = "shard",
                 class_names: Optional[Sequence[str]] = None, progress: bool = False) -> dict:
    """Pack ``samples`` (``[(rel_path, label)]`` under ``data_root``) into ``output`` (see the module
    docstring); resumes a killed run. Returns ``dict(written, kept, index)``."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", prefix):
        raise ValueError(f"--prefix must be letters, digits, '_', '-' or '.', got {prefix!r}")
    output = check_writable(output, "--output")
    _check_output(output, prefix)
    plan = plan_shards(samples, data_root, max_size, class_names)
    names = lambda i: class_names[samples[i][1]] if class_names is not None and isinstance(samples[i][1], int) \
        else None  # noqa: E731
    files = [os.path.join(os.fspath(data_root), p) for p, _ in samples]
    sizes = [_tar_size(sum(_member(s) for i in m for s in _members(i, samples[i][0], samples[i][1], names(i),
                                                                     os.path.getsize(files[i])).values()))
             for m in plan]
    index = _index(samples, plan, max_size, prefix, class_names, sizes)
    index_file = output / INDEX
    if index_file.exists():
        if json.loads(index_file.read_text(encoding="utf-8")) != index:
            raise ValueError(f"--output {output} holds shards of another packing (other videos, labels, sizes or "
                             "--max-size); pack into a new folder")
    else:
        write_text(index_file, json.dumps(index, indent=1))
    from tqdm import tqdm

    written = 0
    for k, members in enumerate(tqdm(plan, desc="shard", unit="shard", disable=not progress)):
        path = output / index["shards"][k]["name"]
        if path.exists():
            continue  # complete: a shard only gets its name when written whole
        atomic_write(path, lambda tmp, m=members: _write_tar(tmp, [(i, samples[i][0], samples[i][1], names(i),
                                                                    files[i]) for i in m]))
        written += 1
    return dict(written=written, kept=len(plan) - written, index=index)


# ---- reading -----------------------------------------------------------------------------------------

def _wds():
    try:
        import webdataset
    except ImportError:
        raise RuntimeError(INSTALL_HINT) from None
    return webdataset


def _open(url: str):
    """A byte stream of a local path, a ``pipe:`` command's output, or a URL (webdataset's openers,
    then fsspec's for the schemes webdataset has none for, e.g. s3://, gcs://, memory://)."""
    _wds()
    gopen = importlib.import_module("webdataset.gopen")
    scheme = urlparse(url).scheme
    if url.startswith("pipe:") or scheme in ("", "file") or len(scheme) == 1 or scheme in gopen.gopen_schemes:
        if scheme in ("", "file") or len(scheme) == 1:  # a local path (or a Windows drive letter)
            local = url[7:] if url.startswith("file://") else url
            if not os.path.isfile(local):
                raise FileNotFoundError(f"shard {url} does not exist (--shards)")
        return gopen.gopen(url)
    try:
        import fsspec
    except ImportError:
        raise RuntimeError(f"--shards {url}: reading {scheme}:// needs fsspec (pip install fsspec)") from None
    return fsspec.open(url, "rb").open()


def _index_location(url: str) -> str:
    """Where the index of a shard lies: its folder; for a ``pipe:`` command, its last argument's."""
    target = url[5:].split()[-1] if url.startswith("pipe:") else url
    return posixpath.join(posixpath.dirname(target), INDEX) if "://" in target else \
        os.path.join(os.path.dirname(target), INDEX)


@dataclass
class ShardSet:
    """The shards a pattern names, and the samples in them (rows in index order: ``samples[row]``)."""
    urls: List[str]
    index_file: str
    samples: List[Tuple[str, object]]
    rows: Dict[int, int]  # index.json sample number -> row
    counts: List[int]  # samples per url
    class_names: Optional[List[str]]

    def dealt(self) -> List[str]:
        """The shards of the calling rank and loader worker (``_mine``)."""
        rank, world, worker, workers = _slot()
        return [u for k, u in enumerate(self.urls) if _mine(k, rank, world, worker, workers)]

    def row(self, meta: dict, url: str) -> int:
        """The row of a shard's sample; a sample the index does not list there is an error."""
        row = self.rows.get(meta.get("index"))
        if row is None or self.samples[row][0] != meta.get("path"):
            raise ValueError(f"shard {url} holds {meta.get('path')!r}, which {self.index_file} does not list there; "
                             "are the shards and the index of one packing?")
        return row


def read_shard_index(pattern: str) -> ShardSet:
    """Expand ``pattern`` (braces ``train-{000000..000009}.tar``, ``::`` between patterns) and read the
    ``index.json`` beside the shards: the pattern may name some of the shards, never unknown ones."""
    urls = _wds().shardlists.expand_urls(pattern)
    where = _index_location(urls[0])
    try:
        with _open(where) as f:
            index = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"--shards {pattern}: cannot read the shards' index {where} ({e}); tada-zoo shard "
                                "writes it beside the shards") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ValueError(f"{where} is not the index of tada-zoo shards (format {FORMAT})")
    by_name = {s["name"]: s for s in index["shards"]}
    names = [posixpath.basename(u.split()[-1] if u.startswith("pipe:") else u) for u in urls]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"--shards names {unknown[0]}, which {where} does not list; are the shards and the "
                         "index of one packing?")
    if len(set(names)) != len(names):
        raise ValueError(f"--shards {pattern} names a shard twice; every video must be read once")
    chosen = set(names)
    entries = [(i, s) for i, s in enumerate(index["samples"]) if s["shard"] in chosen]
    samples = [(s["path"], tuple(s["label"]) if isinstance(s["label"], list) else s["label"]) for _, s in entries]
    return ShardSet(urls=urls, index_file=where, samples=samples, rows={i: r for r, (i, _) in enumerate(entries)},
                    counts=[by_name[n]["count"] for n in names], class_names=index.get("class_names"))


def iter_shard_samples(urls: Sequence[str]) -> Iterator[Tuple[dict, bytes, str]]:
    """``(meta, video bytes, url)`` of every sample of ``urls``, in order (webdataset's tar reading)."""
    wds = _wds()
    for url in urls:
        stream = _open(url)
        try:
            files = wds.tariterators.tar_file_expander([dict(url=url, stream=stream)])
            for sample in wds.tariterators.group_by_keys(files):
                try:
                    meta = json.loads(sample["json"])
                    data = sample[meta["ext"]]
                except (KeyError, ValueError) as e:
                    raise ValueError(f"shard {url}: sample {sample.get('__key__')} is not a tada-zoo sample "
                                     f"(missing {e})") from None
                yield meta, data, url
        except (tarfile.TarError, EOFError) as e:
            raise OSError(f"shard {url} cannot be read ({e}); is it a complete tar?") from None
        finally:
            stream.close()


def _mine(k: int, rank: int, world: int, worker: int, workers: int) -> bool:
    """Item ``k`` (a shard, or a sample) goes to rank ``k % world`` and there to worker ``k // world % workers``."""
    return k % world == rank and k // world % workers == worker


def _slot() -> Tuple[int, int, int, int]:
    """``(rank, world, worker, workers)`` of the calling loader process."""
    dist = torch.distributed
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() \
        else (0, 1)
    info = get_worker_info()
    return rank, world, (info.id if info else 0), (info.num_workers if info else 1)


class ShardDataset(IterableDataset):
    """The samples of a ``ShardSet`` through ``base`` (a ``VideoDataset`` over the same samples: its
    sampling, views and transforms, fed the bytes). Evaluation (``base.train`` False) yields each video
    once in all, ``dict(video=(clips, ...), label, index=row)`` as ``VideoViews`` does. Training yields
    ``VideoDataset`` items, ``len(self)`` per rank: whole batches of ``batch_size`` (set by the trainer),
    ``(N // ranks) // batch_size`` of them, shards dealt out and shuffled as the module docstring says."""

    def __init__(self, base, shards: ShardSet, seed: int = 0, shuffle_buffer: int = 64):
        if shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be positive, got {shuffle_buffer}")
        self.base, self.shards, self.seed, self.shuffle_buffer = base, shards, seed, shuffle_buffer
        self.samples, self.train, self.num_clips = base.samples, base.train, base.num_clips
        self.views_per_video = base.num_clips * getattr(base.transform, "num_crops", 1)
        self.epoch, self.batch_size = 0, 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches_per_rank(self) -> int:
        world = _slot()[1]
        return len(self.samples) // world // self.batch_size

    def __len__(self) -> int:
        return self._batches_per_rank() * self.batch_size if self.train else len(self.samples)

    def __iter__(self) -> Iterator[dict]:
        return self._train_items() if self.train else self._eval_items()

    def _eval_items(self) -> Iterator[dict]:
        for meta, data, url in iter_shard_samples(self.shards.dealt()):
            row = self.shards.row(meta, url)
            label = self.samples[row][1]
            yield dict(video=self.base.load_views(row, data),
                       label=torch.tensor(label, dtype=torch.long) if isinstance(label, tuple) else label, index=row)

    def _order(self, p: int) -> List[str]:
        """Pass ``p``'s shard order, the same on every rank: pass 0 is the epoch's (seed, epoch)."""
        urls = list(self.shards.urls)
        random.Random(f"{self.seed}-{self.epoch}-{p}").shuffle(urls)
        return urls

    def _stream(self, rank: int, world: int, worker: int, workers: int) -> Iterator[Tuple[dict, bytes, str]]:
        """This worker's samples, pass after pass, each pass through the shuffle buffer: the pass's shards
        dealt out (``_mine``), or its samples when there are fewer shards than ranks x workers. A worker
        whose share runs out before its quota goes on with the next pass (another order)."""
        rng = random.Random(f"{self.seed}-{self.epoch}-{rank}-{worker}")
        by_shard = len(self.shards.urls) >= world * workers
        for p in range(1 << 62):
            urls = self._order(p)
            if by_shard:
                mine = iter_shard_samples([u for k, u in enumerate(urls) if _mine(k, rank, world, worker, workers)])
            else:
                mine = (s for j, s in enumerate(iter_shard_samples(urls)) if _mine(j, rank, world, worker, workers))
            yield from _shuffled(mine, self.shuffle_buffer, rng)

    def _quota(self, rank: int, world: int, worker: int, workers: int) -> int:
        """Samples this worker yields: the rank's whole batches, given to its workers up to what their
        share of the epoch holds (so no video repeats where the shares allow), the rest round-robin."""
        counts = dict(zip(self.shards.urls, self.shards.counts))
        urls, n = self._order(0), len(self.samples)
        if len(urls) >= world * workers:
            have = [sum(counts[u] for k, u in enumerate(urls) if _mine(k, rank, world, w, workers))
                    for w in range(workers)]
        else:
            have = [sum(_mine(j, rank, world, w, workers) for j in range(n)) for w in range(workers)]
        left, batches = self._batches_per_rank(), []
        for h in have:
            batches.append(min(h // self.batch_size, left))
            left -= batches[-1]
        for i in range(left):
            batches[i % workers] += 1
        return batches[worker] * self.batch_size

    def _train_items(self) -> Iterator[dict]:
        rank, world, worker, workers = _slot()
        count = self._quota(rank, world, worker, workers)
        stream, skipped = self._stream(rank, world, worker, workers), []
        while count > 0:
            meta, data, url = next(stream)
            row = self.shards.row(meta, url)
            try:
                video = self.base.load_clip(row, None, data)
            except VideoDecodeError as e:
                skipped.append(self.samples[row][0])
                warnings.warn(f"skipping unreadable video ({e}) in shard {url}", RuntimeWarning, stacklevel=2)
                if len(skipped) > self.base.max_retries:
                    raise VideoDecodeError(url, f"{len(skipped)} videos in a row failed to decode") from None
                continue
            video, label = self.base.flip(video, self.samples[row][1])
            yield dict(video=video, label=label, index=row, clip_index=0, skipped=len(skipped),
                       skipped_files="\n".join(skipped))
            skipped, count = [], count - 1


def _shuffled(items: Iterator, size: int, rng: random.Random) -> Iterator:
    """``items`` in a random order drawn from a buffer of ``size`` (webdataset's shuffle), all of them."""
    buffer = []
    for item in items:
        buffer.append(item)
        if len(buffer) >= size:
            k = rng.randrange(len(buffer))
            buffer[k], buffer[-1] = buffer[-1], buffer[k]
            yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer
