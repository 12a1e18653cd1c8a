"""`prerank train`'s random streams, reproduced draw for draw (numpy, vectorised).

Why: on the test world the test AUC of either trainer moves by ±0.01 (CTCVR) between seeds, so
two trainers with their own random streams cannot agree within 0.01 on one seed. With the same
streams — SplitMix64 (Sources/TwinTower/Math/SplitMix64.swift), the Swift standard library's
`Float.random(in:using:)`, `MutableCollection.shuffle(using:)` and Lemire's bounded integers —
`prerank_torch` starts from the very weights `prerank train` starts from, visits the rows in the
same order and drops the same id fields, so the two differ by float rounding only
(docs/TRAINING.md "PyTorch trainer", "Same seed, same model").
"""
import numpy as np

GAMMA = 0x9E3779B97F4A7C15
M64 = (1 << 64) - 1
_U64 = np.uint64


def mix(z):
    """SplitMix64's finaliser (Python int)."""
    z &= M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _mix_np(z):
    with np.errstate(over="ignore"):
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


class SplitMix64:
    """`SplitMix64(seed:)` and `SplitMix64(seed:stream:index:)`; `next(n)` returns the next n
    outputs as uint64."""

    def __init__(self, seed, stream=None, index=0):
        seed &= M64
        if stream is None:
            self.state = seed
        else:
            self.state = mix(seed ^ mix(((stream * GAMMA) & M64) + mix(index + 1)))

    def next(self, n):
        k = np.arange(1, n + 1, dtype=np.uint64)
        with np.errstate(over="ignore"):
            s = _U64(self.state) + k * _U64(GAMMA)
        self.state = (self.state + n * GAMMA) & M64
        return _mix_np(s)

    def floats(self, n, lower, upper):
        """n × `Float.random(in: lower...upper, using: &rng)`: the stdlib draws
        `next(upperBound: 2^24 + 1)` as UInt32 (low 32 bits of next(), Lemire with rejection),
        returns upper for 2^24, else `delta · (Float(r) · 2^-24) + lower` in Float."""
        bound = (1 << 24) + 1
        threshold = ((1 << 32) - bound) % bound
        # A rejected draw is simply followed by the next one: the values are the accepted draws
        # of the raw sequence, in order; the generator ends just after the n-th accepted one.
        parts, have = [], 0
        while have < n:
            want = n - have
            raw = self.next(want + want // 128 + 16) & _U64(0xFFFFFFFF)
            m = raw * _U64(bound)  # < 2^57: exact
            accepted = np.flatnonzero((m & _U64(0xFFFFFFFF)) >= _U64(threshold))
            if len(accepted) > want:
                used = int(accepted[want - 1]) + 1
                self.state = (self.state - (len(raw) - used) * GAMMA) & M64
                accepted = accepted[:want]
            parts.append(m[accepted] >> _U64(32))
            have += len(accepted)
        out = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
        r = out[:n]
        delta = np.float32(upper) - np.float32(lower)
        unit = r.astype(np.float32) * np.float32(2.0 ** -24)
        v = delta * unit + np.float32(lower)
        return np.where(r == (1 << 24), np.float32(upper), v).astype(np.float32)

    def shuffle(self, order):
        """`order.shuffle(using: &rng)` in place (a list): Fisher-Yates from the front, each swap
        partner `Int.random(in: 0..<amount)` = Lemire's 64-bit bounded draw."""
        n = len(order)
        if n <= 1:
            return order
        amounts = np.arange(n, 1, -1, dtype=np.uint64)
        raw = self.next(n - 1)
        j = _mul_high(raw, amounts)
        low = _mul_low(raw, amounts)
        if (low < amounts).any():  # p ≈ n / 2^64: the exact slow path
            self.state = (self.state - (n - 1) * GAMMA) & M64
            j = np.empty(n - 1, dtype=np.uint64)
            for i in range(n - 1):
                a = n - i
                while True:
                    r = int(self.next(1)[0])
                    prod = r * a
                    lo = prod & M64
                    if lo >= a or lo >= ((1 << 64) - a) % a:
                        break
                j[i] = prod >> 64
        js = j.tolist()
        for i, k in enumerate(js):
            k += i
            order[i], order[k] = order[k], order[i]
        return order

    def below(self, n, cut):
        """n booleans `next() < cut`."""
        return self.next(n) < _U64(cut)


def _mul_low(a, b):
    with np.errstate(over="ignore"):
        return a * b


def _mul_high(a, b):
    """High 64 bits of a × b (uint64 arrays)."""
    mask = _U64(0xFFFFFFFF)
    a_lo, a_hi = a & mask, a >> _U64(32)
    b_lo, b_hi = b & mask, b >> _U64(32)
    with np.errstate(over="ignore"):
        ll = a_lo * b_lo
        lh = a_lo * b_hi
        hl = a_hi * b_lo
        hh = a_hi * b_hi
        mid = (ll >> _U64(32)) + (lh & mask) + (hl & mask)
        return hh + (lh >> _U64(32)) + (hl >> _U64(32)) + (mid >> _U64(32))


def dropout_cut(p):
    """`UInt64(Double(min(Float(p), 1)) * Double(UInt64.max))` (Double(UInt64.max) is 2^64)."""
    x = float(min(np.float32(p), np.float32(1.0))) * 18446744073709551616.0
    return min(int(x), M64)
