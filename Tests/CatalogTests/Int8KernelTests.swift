import Foundation
import Testing
@testable import Catalog
import TwinTower

/// The I8 integer path (user vector quantised per request, `vpmaddubsw` dots) against a plain
/// Swift reference written from the error model in Sources/CKernels/include/ckernels.h, and the
/// batched id lookup against one-at-a-time lookups. No wall-clock assertions.
@Suite struct Int8KernelTests {
    /// An I8 index written directly (not through our quantiser), so it can hold -128, which our
    /// writer never produces but another writer may.
    func index(n: Int, t: Int, d: Int, seed: UInt64) throws -> (ItemIndex, q: [Int8], scales: [Float]) {
        var rng = SplitMix64(seed: seed)
        var q = (0..<(n * t * d)).map { _ in Int8(truncatingIfNeeded: Int(rng.next() % 256) - 128) }
        q[0] = -128; q[1] = 127; q[d] = -128
        let scales = (0..<(n * t)).map { _ in Float.random(in: 0.001...0.02, using: &rng) }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("i8-\(UUID().uuidString).st").path
        try SafetensorsWriter.write([
            TensorEntry("ids", shape: [n], .i64((0..<n).map { Int64($0) * 7 + 3 })),
            TensorEntry("vectors", shape: [n, t, d], .i8(q)),
            TensorEntry("scales", shape: [n, t], .f32(scales)),
        ], metadata: ["dtype": "i8"], to: path)
        return (try ItemIndex(path: path), q, scales)
    }

    /// The reference: quantise u per task (scale = max|u|/127, round half to even), exact integer
    /// sum, then `Float(sum) · (s_u · s_v)` — the same float operations as the kernel.
    static func referenceDot(user: [Float], q: [Int8], scales: [Float], row: Int, task k: Int, t: Int, d: Int) -> Float {
        let u = user[(k * d)..<((k + 1) * d)]
        let m = u.map { abs($0) }.max() ?? 0
        guard m > 0 else { return 0 }
        let su = m / 127
        var sum: Int32 = 0
        for j in 0..<d {
            let qu = Int32(max(-127, min(127, (u[k * d + j] / su).rounded(.toNearestOrEven))))
            sum += qu * Int32(q[(row * t + k) * d + j])
        }
        return Float(sum) * (su * scales[row * t + k])
    }

    @Test(arguments: [1, 15, 16, 17, 31, 32, 33, 64, 67, 200])
    func integerDotsEqualTheReferenceBitForBit(d: Int) throws {
        let t = 3, n = 300
        let (index, q, scales) = try index(n: n, t: t, d: d, seed: UInt64(d))
        var rng = SplitMix64(seed: 99)
        var user = (0..<(t * d)).map { _ in Float.random(in: -2...2, using: &rng) }
        for j in 0..<d { user[2 * d + j] = 0 }  // an all-zero task: scale 0, dots 0
        let rows: [Int32] = (0..<257).map { _ in Int32(rng.next() % UInt64(n)) }  // 4-row groups and a tail
        let chain = LogitChain(architecture: Architecture(hidden: [], d: d, fr: true, lr: true, clamp: false, chain: .additive),
                               headBias: [0, 0, 0])
        var got = [Float](repeating: .nan, count: rows.count * t)
        user.withUnsafeBufferPointer { u in index.dots(user: u.baseAddress!, rows: rows, count: rows.count, chain: chain, into: &got) }
        for (i, r) in rows.enumerated() {
            for k in 0..<t {
                let want = Self.referenceDot(user: user, q: q, scales: scales, row: Int(r), task: k, t: t, d: d)
                #expect(got[i * t + k].bitPattern == want.bitPattern, "row \(r) task \(k): \(got[i * t + k]) vs \(want)")
            }
        }
    }

    /// Integer dots stay within the stated bound of the F32 dot of the dequantised row:
    /// |Σ u_j v_j − integer dot| ≤ (s_u / 2) · Σ_j |v_j| (plus float rounding).
    @Test func integerDotsStayWithinTheErrorModel() throws {
        let t = 2, d = 64, n = 500
        let (index, _, _) = try index(n: n, t: t, d: d, seed: 5)
        var rng = SplitMix64(seed: 6)
        let user = (0..<(t * d)).map { _ in Float.random(in: -1...1, using: &rng) }
        let rows = (0..<Int32(n)).map { $0 }
        let chain = LogitChain(architecture: Architecture(hidden: [], d: d, fr: false, lr: false, clamp: false, chain: .additive),
                               headBias: [0, 0])
        var integer = [Float](repeating: 0, count: n * t), widened = integer
        user.withUnsafeBufferPointer { u in
            index.dots(user: u.baseAddress!, rows: rows, count: n, chain: chain, into: &integer)
            index.dots(user: u.baseAddress!, rows: rows, count: n, chain: chain, tuning: KernelTuning(i8Integer: false), into: &widened)
        }
        var worst: Float = 0
        for r in 0..<n {
            for k in 0..<t {
                let v = index.vector(row: r, task: k)
                let su = (user[(k * d)..<((k + 1) * d)].map { abs($0) }.max() ?? 0) / 127
                let bound = su / 2 * v.reduce(0) { $0 + abs($1) }
                let err = abs(integer[r * t + k] - widened[r * t + k])
                #expect(err <= bound * 1.0001 + 1e-5, "row \(r) task \(k): error \(err) over bound \(bound)")
                worst = max(worst, err / max(bound, 1e-12))
            }
        }
        #expect(worst > 0)  // the two paths really differ: the test compares two computations
    }

    /// The batched lookup (C, prefetching) equals the one-at-a-time lookup, for contiguous and
    /// hashed id sets, with unknown, negative and extreme ids mixed in.
    @Test(arguments: [false, true])
    func batchedLookupEqualsSingleLookups(contiguous: Bool) {
        var rng = SplitMix64(seed: contiguous ? 1 : 2)
        let ids: [Int64] = contiguous ? (0..<5000).map { 1_000 + Int64($0) }
                                      : Array(Set((0..<5000).map { _ in Int64(rng.next() % 50_000_000) - 1_000 })).sorted()
        for hugePages in [false, true] {
            let table = ids.withUnsafeBufferPointer { IDTable(ids: $0, hugePages: hugePages) }
            var probe = (0..<3000).map { _ in ids[Int(rng.next() % UInt64(ids.count))] }
            probe += [-1, 0, Int64.min, Int64.max, 999, 6000, 51_000_000]
            probe += (0..<500).map { _ in Int64(bitPattern: rng.next()) }
            var rows = [Int32](repeating: -7, count: probe.count)
            probe.withUnsafeBufferPointer { p in rows.withUnsafeMutableBufferPointer { table.rows(of: p, into: $0.baseAddress!) } }
            for (id, row) in zip(probe, rows) {
                #expect(row == table.row(of: id))
                if row >= 0 { #expect(ids[Int(row)] == id) } else { #expect(!ids.contains(id)) }
            }
        }
    }
}
