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


def _parquet_cell(v):
    """A Parquet value as the CSV text it stands for (one code path for both formats)."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"  # not 0/1 and not a categorical value: rejected downstream
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return ""
        return str(int(v)) if v.is_integer() and abs(v) < 2**63 else repr(v)
    if isinstance(v, (list, tuple)):
        return "|".join(_parquet_cell(x) for x in v)
    if isinstance(v, bytes):
        return v.decode("utf-8")
    return str(v)


class Encoder:
    """Encodes chunks of rows column by column (labels, dense values, bucket ids) with the checks
    of `prerank train`; an error names the file, the line and the column."""

    def __init__(self, tasks, features, weight_column=None):
        self.tasks = tasks
        self.features = features
        self.weight_column = weight_column
        self.sides = {}
        for side in ("user", "item"):
            fs = fields(features, side)
            self.sides[side] = {
                "dense": [f["name"] for f in fs if f["kind"] == "dense"],
                "emb": [(f["name"], f["kind"], FieldHasher(f["name"], f["buckets"])) for f in fs if f["kind"] != "dense"],
            }
        self.wanted = {t["label"] for t in tasks} | {f["name"] for f in features} | {"request_id"}
        if weight_column:
            self.wanted.add(weight_column)
        self.split_cache = {}

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
        weight = None
        if self.weight_column:
            if self.weight_column not in columns:
                raise InputError(f"{path}: line 1: no weight column {self.weight_column} (--weight-column)")
            weight = columns[self.weight_column]
        return {
            "weight": weight,
            "labels": labels,
            "request": columns.get("request_id"),
            "dense": {s: [columns.get(n) for n in self.sides[s]["dense"]] for s in self.sides},
            "emb": {s: [columns.get(n) for n, _, _ in self.sides[s]["emb"]] for s in self.sides},
            "ncols": len(header),
        }

    def chunk(self, path, lines, rows, cols, cut, skip_bad_rows, numbers=None):
        """Encodes rows (lists of cell strings) of one file. Returns (block, is_validation mask,
        number skipped). Rows are checked in file order: the first bad line stops (or, with
        skip_bad_rows, every bad row is dropped and counted)."""
        n = len(rows)
        lines = np.asarray(lines, dtype=np.int64)
        bad = {}  # row -> message (first problem of that row)

        def flag(mask, message):
            for i in np.flatnonzero(mask):
                i = int(i)
                if i not in bad:
                    bad[i] = message(i)
                    if not skip_bad_rows:
                        break

        ncols = cols["ncols"]
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=n)
        wrong = lengths != ncols
        if wrong.any():
            flag(wrong, lambda i: f"line {lines[i]}: {lengths[i]} columns, header has {ncols}")
            filler = ["0"] * ncols
            rows = [filler if w else r for r, w in zip(rows, wrong)]
        columns = list(zip(*rows)) if n else [()] * ncols

        # Labels: 0/1 and never 1 after a 0 along the chain.
        T = len(self.tasks)
        y = np.zeros((n, T), dtype=np.int64)
        code = {"0": 0, "1": 1}
        for k, c in enumerate(cols["labels"]):
            col = columns[c]
            yk = np.fromiter((code.get(v, code.get(v.strip(" \t"), -1)) for v in col), dtype=np.int64, count=n)
            label = self.tasks[k]["label"]
            flag(yk < 0, lambda i, col=col, label=label:
                 f"line {lines[i]}: label {label} must be 0 or 1, is \"{col[i]}\" (column {label})")
            y[:, k] = yk
        for k in range(1, T):
            label, prev = self.tasks[k]["label"], self.tasks[k - 1]["label"]
            flag((y[:, k] == 1) & (y[:, k - 1] == 0),
                 lambda i, label=label, prev=prev: f"line {lines[i]}: {label}=1 without {prev}=1 (column {label})")
        bits = (np.clip(y, 0, 1) << np.arange(T)[None, :]).sum(1) if n else np.zeros(0, dtype=np.int64)

        block = {"bits": bits, "n": n}
        if numbers is not None:
            block["index"] = np.asarray(numbers, dtype=np.int64)  # data row number across the inputs
        if cols.get("weight") is not None:
            # --weight-column: each row's loss is multiplied by it; a finite number ≥ 0.
            name, col = self.weight_column, [v.strip(" \t") for v in columns[cols["weight"]]]
            w = np.full(n, np.nan)
            for i, v in enumerate(col):
                try:
                    w[i] = float(v) if v and "_" not in v else math.nan
                except ValueError:
                    pass
            with np.errstate(over="ignore", invalid="ignore"):
                w32 = w.astype(np.float32)
            flag(~(np.isfinite(w32) & (w32 >= 0)), lambda i, col=col, name=name:
                 f"line {lines[i]}: weight \"{col[i]}\" must be a finite number ≥ 0 (column {name})")
            block["weight"] = np.where(np.isfinite(w32), w32, 0).astype(np.float32)
        for side in ("user", "item"):
            names = self.sides[side]["dense"]
            dense = np.full((n, len(names)), np.nan, dtype=np.float32)
            for j, (name, c) in enumerate(zip(names, cols["dense"][side])):
                if c is None:
                    continue
                col = [v.strip(" \t") for v in columns[c]]
                empty = np.fromiter((v == "" for v in col), dtype=bool, count=n)
                try:
                    vals = np.array([v if v else "nan" for v in col], dtype=np.float64)
                    parse_bad = np.zeros(n, dtype=bool)
                except ValueError:
                    vals = np.empty(n)
                    parse_bad = np.zeros(n, dtype=bool)
                    for i, v in enumerate(col):
                        try:
                            vals[i] = float(v) if v else math.nan
                        except ValueError:
                            vals[i], parse_bad[i] = math.nan, True
                with np.errstate(over="ignore", invalid="ignore"):
                    v32 = vals.astype(np.float32)
                nonfinite = parse_bad | (~empty & ~np.isfinite(v32))
                underscores = np.fromiter(("_" in v for v in col), dtype=bool, count=n)
                flag(nonfinite | underscores, lambda i, col=columns[c], name=name:
                     f"line {lines[i]}: \"{col[i]}\" is not a finite number (column {name})")
                dense[:, j] = np.where(empty | nonfinite, np.nan, v32)
            block[f"dense.{side}"] = dense
            bags = []
            for (name, kind, hasher), c in zip(self.sides[side]["emb"], cols["emb"][side]):
                if c is None:
                    bags.append((np.zeros(0, dtype=np.int64), np.zeros(n + 1, dtype=np.int64)))
                    continue
                col = columns[c]
                if kind == "categorical":
                    ids = hasher.column(col)
                    keep = ids >= 0
                    flat = ids[keep]
                    counts = keep.astype(np.int64)
                else:
                    parts = [v.split("|") for v in col]
                    per = np.fromiter((len(p) for p in parts), dtype=np.int64, count=n)
                    ids = hasher.column([x for p in parts for x in p])
                    keep = ids >= 0
                    flat = ids[keep]
                    counts = np.bincount(np.repeat(np.arange(n), per)[keep], minlength=n).astype(np.int64)
                offsets = np.zeros(n + 1, dtype=np.int64)
                np.cumsum(counts, out=offsets[1:])
                bags.append((flat, offsets))
            block[f"bags.{side}"] = bags

        # The split: by hash of request_id (cached: a request has many rows), else by line.
        if cut > 0:
            r = cols["request"]
            cache = self.split_cache
            if r is not None:
                val = np.zeros(n, dtype=bool)
                for i, rid in enumerate(columns[r]):
                    v = cache.get(rid)
                    if v is None:
                        v = is_validation(fnv1a(rid.encode("utf-8")), cut)
                        if len(cache) < (1 << 22):
                            cache[rid] = v
                    val[i] = v
            else:
                val = np.fromiter((is_validation(int(l), cut) for l in lines), dtype=bool, count=n)
        else:
            val = np.zeros(n, dtype=bool)

        skipped = 0
        if bad:
            if not skip_bad_rows:
                i = min(bad)
                raise InputError(f"{path}: {bad[i]}")
            keep = np.ones(n, dtype=bool)
            keep[list(bad)] = False
            skipped = int((~keep).sum())
            block = take(block, np.flatnonzero(keep))
            val = val[keep]
        return block, val, skipped


def take(block, idx):
    """Rows `idx` of a block (numpy fancy indexing; bags through their offsets)."""
    idx = np.asarray(idx, dtype=np.int64)
    out = {"bits": block["bits"][idx], "n": len(idx)}
    for key in ("weight", "index"):
        if key in block:
            out[key] = block[key][idx]
    for side in ("user", "item"):
        out[f"dense.{side}"] = block[f"dense.{side}"][idx]
        bags = []
        for flat, offsets in block[f"bags.{side}"]:
            starts = offsets[idx]
            lens = offsets[idx + 1] - starts
            new_off = np.zeros(len(idx) + 1, dtype=np.int64)
            np.cumsum(lens, out=new_off[1:])
            gather = np.repeat(starts - new_off[:-1], lens) + np.arange(new_off[-1], dtype=np.int64)
            bags.append((flat[gather], new_off))
        out[f"bags.{side}"] = bags
    return out


def concat(blocks):
    if len(blocks) == 1:
        return blocks[0]
    out = {"bits": np.concatenate([b["bits"] for b in blocks]), "n": sum(b["n"] for b in blocks)}
    for key in ("weight", "index"):
        if key in blocks[0]:
            out[key] = np.concatenate([b[key] for b in blocks])
    for side in ("user", "item"):
        out[f"dense.{side}"] = np.concatenate([b[f"dense.{side}"] for b in blocks])
        bags = []
        for f in range(len(blocks[0][f"bags.{side}"])):
            flats, offs, base = [], [np.zeros(1, dtype=np.int64)], 0
            for b in blocks:
                flat, offsets = b[f"bags.{side}"][f]
                flats.append(flat)
                offs.append(offsets[1:] + base)
                base += offsets[-1]
            bags.append((np.concatenate(flats), np.concatenate(offs)))
        out[f"bags.{side}"] = bags
    return out


def iterate_blocks(sources, encoder, shard, shards, validation_fraction, want, skip_bad_rows=False, skipped=None,
                   chunk=4096):
    """Yields (block, is_validation mask) for the rows of `shard` of `shards`, `chunk` rows at a
    time; `want` "train" / "validation" keeps only those rows, "all" keeps both."""
    cut = validation_cut(validation_fraction)
    index = 0
    for path in sources:
        parquet = path.endswith((".parquet", ".pq"))
        rows_iter = _parquet_rows(path, encoder.wanted) if parquet else _csv_rows(path)
        cols = None
        lines, rows, numbers = [], [], []

        def flush():
            block, val, sk = encoder.chunk(path, lines, rows, cols, cut, skip_bad_rows, numbers)
            if skipped is not None:
                skipped[0] += sk
            if want == "train":
                block, val = take(block, np.flatnonzero(~val)), val[~val]
            elif want == "validation":
                block, val = take(block, np.flatnonzero(val)), val[val]
            return block, val

        for line, header, cells in rows_iter:
            if cells is None:
                cols = encoder.bind(path, header)
                continue
            i = index
            index += 1
            if i % shards != shard:
                continue
            if parquet:
                cells = [_parquet_cell(v) for v in cells]
            lines.append(line)
            rows.append(cells)
            numbers.append(i)
            if len(rows) >= chunk:
                yield flush()
                lines, rows, numbers = [], [], []
        if rows:
            yield flush()


def iterate_rows(sources, encoder, shard, shards, validation_fraction, want, skip_bad_rows=False, skipped=None):
    """Compatibility: yields (is_validation, block of one row)."""
    for block, val in iterate_blocks(sources, encoder, shard, shards, validation_fraction, want, skip_bad_rows, skipped):
        for i in range(block["n"]):
            yield bool(val[i]), take(block, [i])


def to_batch(block, n_tasks):
    """A block as the model's input: labels [B, T], raw dense values [B, n] (NaN missing), and
    per embedding field the EmbeddingBag input (flat indices, offsets)."""
    bits = block["bits"]
    labels = ((bits[:, None] >> np.arange(n_tasks)[None, :]) & 1).astype(np.float32)
    batch = {"labels": torch.from_numpy(labels), "n": block["n"]}
    if "weight" in block:
        batch["row_weight"] = torch.from_numpy(np.ascontiguousarray(block["weight"]))
    for side in ("user", "item"):
        batch[f"dense.{side}"] = torch.from_numpy(np.ascontiguousarray(block[f"dense.{side}"]))
        batch[f"bags.{side}"] = [(torch.from_numpy(flat), torch.from_numpy(offsets[:-1].copy()))
                                 for flat, offsets in block[f"bags.{side}"]]
    return batch


def drop_to_oov(block, id_fields, drop):
    """Routes id field f of the rows with `drop[:, f]` to the field's OOV row (see route_ids_to_oov)."""
    for f, (side, j, oov) in enumerate(id_fields):
        flat, offsets = block[f"bags.{side}"][j]
        per_value = np.repeat(drop[:, f], np.diff(offsets))
        if per_value.any():
            flat = flat.copy()
            flat[per_value] = oov
            block[f"bags.{side}"][j] = (flat, offsets)
    return block


def route_ids_to_oov(block, id_fields, p, rng):
    """Id dropout, in place: each row reads each id field from the field's OOV row (index
    `buckets` of the training table) with probability p. Every value of a dropped row's bag
    becomes the OOV index: the bag's mean is then the OOV vector and its gradient lands on the
    OOV row whole, exactly as `prerank train` reads a dropped field's OOV row once. A missing
    value stays missing (zeros). One draw per row and field, in field order."""
    n = block["n"]
    for side, j, oov in id_fields:
        drop = rng.random(n) < p
        flat, offsets = block[f"bags.{side}"][j]
        per_value = np.repeat(drop, np.diff(offsets))
        if per_value.any():
            flat = flat.copy()
            flat[per_value] = oov
            block[f"bags.{side}"][j] = (flat, offsets)
    return block


class ShardedStream(torch.utils.data.IterableDataset):
    """One epoch of training batches for one rank.

    The data is cut into `shards` logical shards (row i is in shard i mod shards; a multiple of
    the world size, default equal to it); this rank owns the shards s ≡ rank (mod world) and
    each DataLoader worker reads its share of every owned shard. Each (shard, worker) stream has
    its own seeded shuffle buffer (seed, epoch, shard, worker) and cuts batches of
    `ceil(batch / shards)` rows; a step takes one such batch from every owned shard, and the
    loss is the mean of the shards' means. So N processes with S shards take exactly the steps
    one process takes with the same S (up to floating-point summation order)."""

    def __init__(self, sources, tasks, features, rank, world, shards, epoch, seed, batch, buffer, validation_fraction,
                 skip_bad_rows, shuffle=True, id_fields=(), id_p=0.0, weight_column=None):
        super().__init__()
        # Id dropout (`route_ids_to_oov`): the (side, field index, OOV row) of every id field and
        # the probability that a row reads it from the OOV row (1 during warm start).
        self.id_fields, self.id_p, self.weight_column = list(id_fields), float(id_p), weight_column
        self.sources, self.tasks, self.features = sources, tasks, features
        self.rank, self.world, self.shards, self.epoch, self.seed = rank, world, shards, epoch, seed
        self.batch, self.buffer, self.validation_fraction = batch, buffer, validation_fraction
        self.skip_bad_rows, self.shuffle = skip_bad_rows, shuffle

    def _stream(self, shard, wid, nw, buffer):
        enc = Encoder(self.tasks, self.features, self.weight_column)
        S = self.shards
        rng = np.random.default_rng([self.seed, self.epoch, shard, wid])
        # Its own stream, so the shuffle is the same with or without id dropout.
        drop_rng = np.random.default_rng([self.seed, self.epoch, shard, wid, 0xD20F])
        pending, size = [], 0
        # rows i with i mod S == shard and (i div S) mod nw == wid, i.e. i mod (S·nw) == shard + S·wid
        blocks = iterate_blocks(self.sources, enc, shard + S * wid, S * nw, self.validation_fraction, "train",
                                self.skip_bad_rows)
        done = False
        while not done:
            # Fill the shuffle buffer, permute it, emit whole batches, keep the rest for the next fill.
            for block, _ in blocks:
                if block["n"]:
                    pending.append(block)
                    size += block["n"]
                if size >= max(buffer, self.batch):
                    break
            else:
                done = True
            if size == 0:
                break
            buf = concat(pending)
            order = rng.permutation(size) if self.shuffle else np.arange(size)
            whole = size if done else (size // self.batch) * self.batch
            for start in range(0, whole, self.batch):
                out = take(buf, order[start:start + self.batch])
                if self.id_fields and self.id_p > 0:
                    route_ids_to_oov(out, self.id_fields, self.id_p, drop_rng)
                yield out
            rest = order[whole:]
            pending = [take(buf, np.sort(rest))] if len(rest) else []
            size = len(rest)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        owned = list(range(self.rank, self.shards, self.world))
        streams = [self._stream(s, wid, nw, max(1, self.buffer // self.shards)) for s in owned]
        T = len(self.tasks)
        for blocks in zip(*streams):
            batch = to_batch(concat(list(blocks)), T)
            weights = np.concatenate([np.full(b["n"], 1.0 / (len(blocks) * b["n"]), dtype=np.float32) for b in blocks])
            batch["weights"] = torch.from_numpy(weights)
            yield batch
