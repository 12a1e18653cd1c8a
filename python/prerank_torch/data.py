"""Training data (SPEC §3): CSV or Parquet files with the same columns, streamed and sharded.

Rows are numbered across the input files in order; data row `i` belongs to shard `i mod S` with
`S = world_size × loader workers`, so every (rank, worker) reads a disjoint share and together
they read every row once. Each row is validated as `prerank train` validates it (labels 0/1 and
never 1 after a 0 along the chain, column count, finite dense numbers) and errors name the file,
the line and the column. Requests whose id hashes into `--validation-fraction` are held out,
with the same hash as `prerank train`, so both trainers validate on the same requests.
"""
import csv
import math
import os
import random

import numpy as np
import torch

from .errors import InputError
from .hashing import FieldHasher, fnv1a, is_validation, validation_cut, value_text
from .spec import fields


def list_sources(data: str):
    """train.csv, a .parquet file, or a directory of them (sorted by name)."""
    if os.path.isdir(data):
        names = sorted(n for n in os.listdir(data) if n.endswith((".csv", ".parquet", ".pq")))
        if not names:
            raise InputError(f"{data}: no .csv or .parquet files in the directory")
        return [os.path.join(data, n) for n in names]
    if not os.path.exists(data):
        raise InputError(f"{data}: no such file")
    return [data]


def _csv_rows(path):
    """(line, header, cells) of a CSV: RFC 4180 quoting, BOM skipped, blank lines skipped."""
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})")
    with f:
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise InputError(f"{path}: empty file: no header row")
            header = [h.strip(" \t") for h in header]
            yield 1, header, None
            for cells in reader:
                if not cells:
                    continue
                yield reader.line_num, header, cells
        except csv.Error as e:
            raise InputError(f"{path}: line {reader.line_num}: {e}")
        except UnicodeDecodeError:
            raise InputError(f"{path}: line {reader.line_num + 1}: not valid UTF-8")


def _parquet_rows(path, wanted):
    """(row number + 1, header, cells) of a Parquet file; cells are Python values."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)")
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:
        raise InputError(f"{path}: not a Parquet file ({e})")
    header = list(pf.schema_arrow.names)
    yield 1, header, None
    columns = [c for c in header if c in wanted]
    index = {c: header.index(c) for c in columns}
    line = 1
    for rb in pf.iter_batches(batch_size=8192, columns=columns):
        cols = [rb.column(i).to_pylist() for i in range(rb.num_columns)]
        n = rb.num_rows
        names = rb.schema.names
        for r in range(n):
            line += 1
            cells = [None] * len(header)
            for c, name in enumerate(names):
                cells[index[name]] = cols[c][r]
            yield line, header, cells


class Encoder:
    """Turns one row's cells into (label bits, dense values per side, buckets per field)."""

    def __init__(self, tasks, features):
        self.tasks = tasks
        self.features = features
        self.sides = {}
        for side in ("user", "item"):
            fs = fields(features, side)
            self.sides[side] = {
                "dense": [f["name"] for f in fs if f["kind"] == "dense"],
                "emb": [(f["name"], f["kind"], FieldHasher(f["name"], f["buckets"])) for f in fs if f["kind"] != "dense"],
            }
        self.wanted = {t["label"] for t in tasks} | {f["name"] for f in features} | {"request_id"}

    def bind(self, path, header):
        """Column positions for a file (labels must exist; an absent feature column is missing)."""
        columns = {}
        for i, name in enumerate(header):
            columns.setdefault(name, i)
        labels = []
        for t in self.tasks:
            if t["label"] not in columns:
                raise InputError(f"{path}: line 1: no label column {t['label']} for task {t['name']}")
            labels.append(columns[t["label"]])
        return {
            "labels": labels,
            "request": columns.get("request_id"),
            "dense": {s: [columns.get(n) for n in self.sides[s]["dense"]] for s in self.sides},
            "emb": {s: [columns.get(n) for n, _, _ in self.sides[s]["emb"]] for s in self.sides},
            "ncols": len(header),
        }

    def labels(self, path, line, cells, cols):
        bits = 0
        for k, c in enumerate(cols["labels"]):
            v = cells[c]
            label = self.tasks[k]["label"]
            if isinstance(v, str):
                v = v.strip(" \t")
                ok = v in ("0", "1")
                one = v == "1"
            elif isinstance(v, (bool, int, float)) and v in (0, 1):
                ok, one = True, bool(v == 1)
            else:
                ok, one = False, False
            if not ok:
                raise InputError(f"{path}: line {line}: label {label} must be 0 or 1, is {v!r} (column {label})")
            if one:
                if k > 0 and not bits & (1 << (k - 1)):
                    prev = self.tasks[k - 1]["label"]
                    raise InputError(f"{path}: line {line}: {label}=1 without {prev}=1 (column {label})")
                bits |= 1 << k
        return bits

    def dense(self, path, line, cells, cols, side):
        out = []
        for name, c in zip(self.sides[side]["dense"], cols["dense"][side]):
            v = None if c is None else cells[c]
            if v is None:
                out.append(math.nan)
                continue
            if isinstance(v, str):
                t = v.strip(" \t")
                if t == "":
                    out.append(math.nan)
                    continue
                try:
                    x = float(t)
                except ValueError:
                    x = math.nan
                    t = None
                if t is None or "_" in v or not math.isfinite(x) or not math.isfinite(np.float32(x)):
                    raise InputError(f"{path}: line {line}: \"{v}\" is not a finite number (column {name})")
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                x = float(v)
                if x != x:
                    out.append(math.nan)
                    continue
                if not math.isfinite(x):
                    raise InputError(f"{path}: line {line}: {v!r} is not a finite number (column {name})")
            else:
                raise InputError(f"{path}: line {line}: {v!r} is not a number (column {name})")
            out.append(x)
        return out

    def buckets(self, path, line, cells, cols, side):
        """Per categorical/multi field, the list of bucket ids (empty: missing)."""
        out = []
        for (name, kind, hasher), c in zip(self.sides[side]["emb"], cols["emb"][side]):
            v = None if c is None else cells[c]
            if v is None:
                out.append(())
                continue
            try:
                if kind == "categorical":
                    if isinstance(v, str):
                        out.append((hasher.text(v),) if v != "" else ())
                    else:
                        t = value_text(v, name)
                        out.append((hasher.text(t),) if t is not None else ())
                else:
                    if isinstance(v, str):
                        parts = [p for p in v.split("|") if p]
                    elif isinstance(v, (list, tuple)):
                        parts = [value_text(p, name) for p in v]
                        parts = [p for p in parts if p is not None]
                    else:
                        t = value_text(v, name)
                        parts = [t] if t is not None else []
                    out.append(tuple(hasher.text(p) for p in parts))
            except ValueError as e:
                raise InputError(f"{path}: line {line}: {e} (column {name})")
        return out

    def row(self, path, line, cells, cols):
        if len(cells) != cols["ncols"]:
            raise InputError(f"{path}: line {line}: {len(cells)} columns, header has {cols['ncols']}")
        bits = self.labels(path, line, cells, cols)
        du = self.dense(path, line, cells, cols, "user")
        di = self.dense(path, line, cells, cols, "item")
        bu = self.buckets(path, line, cells, cols, "user")
        bi = self.buckets(path, line, cells, cols, "item")
        return bits, du, di, bu, bi


def iterate_rows(sources, encoder, shard, shards, validation_fraction, want, skip_bad_rows=False, skipped=None):
    """Yields (is_validation, encoded row) of the rows of `shard` of `shards`.

    `want`: "train", "validation" or "all". Rows outside the shard are counted but not encoded.
    """
    cut = validation_cut(validation_fraction)
    index = 0
    for path in sources:
        rows = _parquet_rows(path, encoder.wanted) if path.endswith((".parquet", ".pq")) else _csv_rows(path)
        cols = None
        for line, header, cells in rows:
            if cells is None:
                cols = encoder.bind(path, header)
                continue
            i = index
            index += 1
            if i % shards != shard:
                continue
            try:
                enc = encoder.row(path, line, cells, cols)
            except InputError:
                if skip_bad_rows:
                    if skipped is not None:
                        skipped[0] += 1
                    continue
                raise
            r = cols["request"]
            if r is not None:
                rid = cells[r]
                rid = rid if isinstance(rid, str) else ("" if rid is None else str(rid))
                key = fnv1a(rid.encode("utf-8"))
            else:
                key = line
            val = cut > 0 and is_validation(key, cut)
            if want == "all" or (want == "validation") == val:
                yield val, enc


def collate(rows, n_tasks, n_dense, n_emb):
    """Encoded rows -> a batch of tensors: labels [B, T], dense raw values per side [B, n] (NaN
    missing), and per embedding field the EmbeddingBag input (flat indices, offsets)."""
    B = len(rows)
    bits = np.fromiter((r[0] for r in rows), dtype=np.int64, count=B)
    labels = ((bits[:, None] >> np.arange(n_tasks)[None, :]) & 1).astype(np.float32)
    batch = {"labels": torch.from_numpy(labels), "n": B}
    for s, side in enumerate(("user", "item")):
        dense = np.array([r[1 + s] for r in rows], dtype=np.float32).reshape(B, n_dense[side])
        batch[f"dense.{side}"] = torch.from_numpy(dense)
        bags = []
        for f in range(n_emb[side]):
            lengths = np.fromiter((len(r[3 + s][f]) for r in rows), dtype=np.int64, count=B)
            offsets = np.zeros(B, dtype=np.int64)
            np.cumsum(lengths[:-1], out=offsets[1:])
            flat = np.fromiter((b for r in rows for b in r[3 + s][f]), dtype=np.int64, count=int(lengths.sum()))
            bags.append((torch.from_numpy(flat), torch.from_numpy(offsets)))
        batch[f"bags.{side}"] = bags
    return batch


class ShardedStream(torch.utils.data.IterableDataset):
    """One epoch of training batches for this rank: its rows, split again among the DataLoader's
    workers, through a seeded shuffle buffer (seed, epoch, shard), collated `batch` rows at a time."""

    def __init__(self, sources, tasks, features, rank, world, epoch, seed, batch, buffer, validation_fraction,
                 skip_bad_rows, shuffle=True):
        super().__init__()
        self.sources, self.tasks, self.features = sources, tasks, features
        self.rank, self.world, self.epoch, self.seed = rank, world, epoch, seed
        self.batch, self.buffer, self.validation_fraction = batch, buffer, validation_fraction
        self.skip_bad_rows, self.shuffle = skip_bad_rows, shuffle

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        shards = self.world * nw
        shard = self.rank + self.world * wid  # row i: rank i mod world, worker (i div world) mod nw
        enc = Encoder(self.tasks, self.features)
        n_dense = {s: len(enc.sides[s]["dense"]) for s in enc.sides}
        n_emb = {s: len(enc.sides[s]["emb"]) for s in enc.sides}
        rng = random.Random((self.seed * 1_000_003 + self.epoch) * 65_537 + shard)
        buf, out = [], []
        rows = iterate_rows(self.sources, enc, shard, shards, self.validation_fraction, "train", self.skip_bad_rows)
        for _, row in rows:
            if not self.shuffle:
                out.append(row)
            elif len(buf) < self.buffer:
                buf.append(row)
                continue
            else:
                j = rng.randrange(len(buf))
                out.append(buf[j])
                buf[j] = row
            if len(out) == self.batch:
                yield collate(out, len(self.tasks), n_dense, n_emb)
                out = []
        rng.shuffle(buf)
        for row in buf:
            out.append(row)
            if len(out) == self.batch:
                yield collate(out, len(self.tasks), n_dense, n_emb)
                out = []
        if out:
            yield collate(out, len(self.tasks), n_dense, n_emb)
