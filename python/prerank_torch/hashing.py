"""SPEC §3 hashing: FNV-1a 64 over UTF-8 of `field + "\\x1f" + value`, modulo buckets.

Also the validation split of `prerank train` (SplitMix64 finaliser of the FNV-1a hash of
`request_id`), so both trainers hold out the same requests.
"""
FNV_OFFSET = 14695981039346656037
FNV_PRIME = 1099511628211
MASK64 = (1 << 64) - 1


def fnv1a(data: bytes, h: int = FNV_OFFSET) -> int:
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK64
    return h


def field_seed(field: str) -> int:
    """The FNV state after `field + "\\x1f"`, reused for every value of the field."""
    return fnv1a(field.encode("utf-8") + b"\x1f")


def value_text(value, where: str):
    """The text a categorical value hashes as (None for a missing value).

    Strings as they are (an empty string is missing); integers in plain decimal; an integral
    float (Parquet/pandas integer columns with nulls become float) as its integer; anything else
    is an error naming `where`.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{where}: a categorical value must be a string or an integer, not a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:  # NaN: missing (a null in a float column)
            return None
        if value.is_integer():
            return str(int(value))
        raise ValueError(f"{where}: a categorical value must be a string or an integer, not a fractional number")
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        return value if value != "" else None
    raise ValueError(f"{where}: a categorical value must be a string or an integer, not {type(value).__name__}")


def fnv1a_many(texts, h: int = FNV_OFFSET):
    """FNV-1a 64 of the UTF-8 of every string, continuing from state `h`, as a uint64 array:
    the same values as `fnv1a`, vectorised over the strings (one numpy pass per byte position
    of the longest, over the strings that long; numpy's uint64 products wrap mod 2^64 as FNV
    needs). For columns of ids this replaces a Python loop over every byte (~250k values/s)."""
    import numpy as np
    data = [t.encode("utf-8") for t in texts]
    n = len(data)
    lengths = np.fromiter(map(len, data), dtype=np.int64, count=n)
    order = np.argsort(-lengths, kind="stable")  # longest first: the strings still going are a prefix
    flat = np.frombuffer(b"".join(data[i] for i in order), dtype=np.uint8)
    sorted_lengths = lengths[order]
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(sorted_lengths[:-1], out=starts[1:])
    state = np.full(n, h, dtype=np.uint64)
    prime = np.uint64(FNV_PRIME)
    longest = int(sorted_lengths[0]) if n else 0
    going = n
    with np.errstate(over="ignore"):
        for j in range(longest):
            while going and sorted_lengths[going - 1] <= j:
                going -= 1
            state[:going] = (state[:going] ^ flat[starts[:going] + j].astype(np.uint64)) * prime
    out = np.empty(n, dtype=np.uint64)
    out[order] = state
    return out


class FieldHasher:
    """Bucket of a value of one field; caches values seen (ids and terms repeat)."""

    __slots__ = ("name", "buckets", "seed", "cache")

    def __init__(self, name: str, buckets: int, cache_limit: int = 1 << 20):
        self.name = name
        self.buckets = buckets
        self.seed = field_seed(name)
        self.cache = {"": -1}

    def column(self, values):
        """Buckets of a list of strings as an int64 array; an empty string gives -1 (missing)."""
        import numpy as np
        cache = self.cache
        try:
            return np.fromiter((cache[v] for v in values), dtype=np.int64, count=len(values))
        except KeyError:
            pass
        new = [v for v in set(values) if v not in cache]
        if new:
            buckets = fnv1a_many(new, self.seed) % np.uint64(self.buckets)
            cache.update(zip(new, buckets.tolist()))
        out = np.fromiter((cache[v] for v in values), dtype=np.int64, count=len(values))
        if len(cache) > (1 << 21):  # bound memory on id columns with huge cardinality
            cache.clear()
            cache[""] = -1
        return out

    def text(self, text: str) -> int:
        b = self.cache.get(text)
        if b is None:
            b = fnv1a(text.encode("utf-8"), self.seed) % self.buckets
            if len(self.cache) < (1 << 20):
                self.cache[text] = b
        return b


def bucket(field: str, value, buckets: int) -> int:
    text = value_text(value, field)
    if text is None:
        raise ValueError(f"{field}: missing value has no bucket")
    return fnv1a(text.encode("utf-8"), field_seed(field)) % buckets


def splitmix64_mix(z: int) -> int:
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def validation_cut(fraction: float) -> int:
    """`UInt64(fraction * Double(UInt64.max))` as `prerank train` computes it."""
    return min(int(fraction * float(MASK64)), MASK64)


def is_validation(key: int, cut: int) -> bool:
    return splitmix64_mix(key ^ 0x5EED) < cut
