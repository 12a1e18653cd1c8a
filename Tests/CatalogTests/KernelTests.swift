import Foundation
import Testing
@testable import Catalog
import TwinTower

/// The C fused kernel (Sources/CKernels) against the scalar references: SIMD vs scalar for every
/// dtype, chain and awkward width; fusion bit-identical to the Swift formula; the top-K
/// pre-filter keeps exactly what it should. No wall-clock assertions.
@Suite struct KernelTests {
    struct Fixture {
        let index: ItemIndex
        let user: [Float]
        let vectors: [Float]
        let n: Int, t: Int, d: Int
    }

    func fixture(dtype: IndexDType, n: Int = 700, t: Int = 3, d: Int, seed: UInt64 = 1) throws -> Fixture {
        var rng = SplitMix64(seed: seed &* 31 &+ UInt64(d))
        let vectors = (0..<(n * t * d)).map { _ in Float.random(in: -1...1, using: &rng) }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kx-\(UUID().uuidString).st").path
        _ = try IndexBuilder.write(ids: (0..<n).map { Int64($0 * 2 + 5) }, vectors: vectors, taskNames: (0..<t).map { "t\($0)" },
                                   d: d, dtype: dtype, fingerprint: "fp", modelVersion: "v", output: path)
        let user = (0..<(t * d)).map { _ in Float.random(in: -1...1, using: &rng) * 0.5 }
        return Fixture(index: try ItemIndex(path: path), user: user, vectors: vectors, n: n, t: t, d: d)
    }

    static func chains(t: Int) -> [LogitChain] {
        let bias = (0..<t).map { Float(-1 - 0.5 * Double($0)) }
        return [
            LogitChain(architecture: Architecture(hidden: [], d: 1, fr: true, lr: true, clamp: false, chain: .additive), headBias: bias),
            LogitChain(architecture: Architecture(hidden: [], d: 1, fr: true, lr: true, clamp: true, chain: .additive), headBias: bias),
            LogitChain(architecture: Architecture(hidden: [], d: 1, fr: false, lr: false, clamp: false, chain: .additive), headBias: bias),
            LogitChain(architecture: Architecture(hidden: [], d: 1, fr: false, lr: false, clamp: true, chain: .multiplicative), headBias: bias),
        ]
    }

    let floatI8 = KernelTuning(i8Integer: false)

    /// SIMD path (gather and contiguous, every block size and tail) = C scalar = Swift scalar.
    @Test(arguments: [IndexDType.f32, .f16, .i8], [1, 5, 8, 17, 64, 67])
    func fusedKernelMatchesScalarReferences(dtype: IndexDType, d: Int) throws {
        for t in [1, 3, 5] {
            let f = try fixture(dtype: dtype, t: t, d: d)
            var rng = SplitMix64(seed: 9)
            let rows: [Int32] = (0..<300).map { _ in Int32(rng.next() % UInt64(f.n)) }
            for chain in Self.chains(t: t) {
                var simd = [Float](repeating: 0, count: rows.count * t)
                var scalarC = simd
                var range = [Float](repeating: 0, count: 259 * t)
                f.user.withUnsafeBufferPointer { u in
                    // I8 here widened to F32 (the reference path); the integer path has its own test.
                    f.index.probabilities(user: u.baseAddress!, rows: rows, count: rows.count, chain: chain, tuning: floatI8, into: &simd)
                    f.index.scalarProbabilitiesC(user: u.baseAddress!, rows: rows, start: 0, count: rows.count, chain: chain, into: &scalarC)
                    f.index.probabilities(user: u.baseAddress!, range: 13..<272, chain: chain,
                                          tuning: KernelTuning(prefetch: 4, i8Integer: false), into: &range)
                }
                for (i, r) in rows.enumerated() {
                    let expected = f.index.scalarReference(user: f.user, row: Int(r), chain: chain)
                    for k in 0..<t {
                        #expect(abs(simd[i * t + k] - expected[k]) <= 2e-6 + 1e-5 * expected[k], "row \(r) task \(k)")
                        #expect(abs(scalarC[i * t + k] - expected[k]) <= 2e-6 + 1e-5 * expected[k])
                    }
                }
                for i in 0..<259 {
                    let expected = f.index.scalarReference(user: f.user, row: 13 + i, chain: chain)
                    for k in 0..<t { #expect(abs(range[i * t + k] - expected[k]) <= 2e-6 + 1e-5 * expected[k]) }
                }
            }
        }
    }

    /// Scores equal the Swift expression of FusionPolicy.score bit for bit (no FMA contraction in
    /// C), the pre-filter keeps exactly `!(score < threshold)`, and prefetch changes nothing.
    @Test(arguments: [IndexDType.f32, .f16, .i8])
    func scoreAndFilterIsExact(dtype: IndexDType) throws {
        let f = try fixture(dtype: dtype, n: 3000, d: 64)
        var rng = SplitMix64(seed: 4)
        let rows: [Int32] = (0..<1000).map { _ in Int32(rng.next() % UInt64(f.n)) }
        let relevance: [Float] = (0..<1000).map { _ in Float(rng.next() % 4) }
        let chain = Self.chains(t: 3)[0]
        var probs = [Float](repeating: 0, count: rows.count * 3)
        f.user.withUnsafeBufferPointer { u in
            f.index.probabilities(user: u.baseAddress!, rows: rows, count: rows.count, chain: chain, into: &probs)
        }
        let scratch = KernelScratch(taskCount: 3, capacity: 1000)
        for fusion in [FusedScoring(formula: .additive, alpha: 1, beta: 20, gamma: 0.1),
                       FusedScoring(formula: .additive, alpha: 0.3, beta: 7.7, gamma: 0),
                       FusedScoring(formula: .multiplicative, alpha: 1, beta: 2.5, gamma: 0)] {
            for useRelevance in [false, true] {
                let expected: [Double] = (0..<rows.count).map { i in
                    let ctr = probs[i * 3], ctcvr = probs[i * 3 + 2], rel = useRelevance ? relevance[i] : 0
                    switch fusion.formula {
                    case .additive: return fusion.alpha * Double(ctr) + fusion.beta * Double(ctcvr) + fusion.gamma * Double(rel)
                    case .multiplicative: return pow(Double(ctr), fusion.alpha) * pow(Double(ctcvr), fusion.beta)
                    }
                }
                let sorted = expected.sorted()
                for threshold in [-Double.infinity, sorted[500], sorted[990], Double.infinity] {
                    for (prefetch, mode) in [(0, KernelTuning.RowPrefetch.l2Pairs), (16, .l2Pairs), (16, .l1Lines)] {
                        let kept = f.user.withUnsafeBufferPointer { u in
                            rows.withUnsafeBufferPointer { r in
                                relevance.withUnsafeBufferPointer { rel in
                                    f.index.scoreAndFilter(user: u.baseAddress!, rows: r.baseAddress!, start: 0, count: rows.count,
                                                           chain: chain, fusion: fusion, relevance: useRelevance ? rel.baseAddress! : nil,
                                                           threshold: threshold, scratch: scratch, tuning: KernelTuning(prefetch: prefetch, rowPrefetch: mode))
                                }
                            }
                        }
                        let want = (0..<rows.count).filter { !(expected[$0] < threshold) }
                        #expect(kept == want.count)
                        for j in 0..<min(kept, want.count) {
                            #expect(Int(scratch.keptIndex[j]) == want[j])
                            #expect(scratch.keptScore[j].bitPattern == expected[want[j]].bitPattern)
                        }
                    }
                }
            }
        }
    }

    /// A row's score has the same bits however it is reached: contiguous scan (row by row),
    /// gathered (four rows at a time), or at any offset within a call (tails of 1–3 rows).
    @Test(arguments: [IndexDType.f32, .f16, .i8])
    func contiguousEqualsGather(dtype: IndexDType) throws {
        let f = try fixture(dtype: dtype, n: 2000, d: 37)
        let chain = Self.chains(t: 3)[1]
        let fusion = FusedScoring(formula: .additive, alpha: 1, beta: 20, gamma: 0)
        let rows = (100..<1100).map { Int32($0) }
        let a = KernelScratch(taskCount: 3, capacity: 1000), b = KernelScratch(taskCount: 3, capacity: 1000)
        let (ka, kb) = f.user.withUnsafeBufferPointer { u in
            rows.withUnsafeBufferPointer { r in
                (f.index.scoreAndFilter(user: u.baseAddress!, rows: r.baseAddress!, start: 0, count: 1000, chain: chain, fusion: fusion,
                                        relevance: nil, threshold: -.infinity, scratch: a),
                 f.index.scoreAndFilter(user: u.baseAddress!, rows: nil, start: 100, count: 1000, chain: chain, fusion: fusion,
                                        relevance: nil, threshold: -.infinity, scratch: b))
            }
        }
        #expect(ka == 1000 && kb == 1000)
        for j in 0..<1000 { #expect(a.keptScore[j].bitPattern == b.keptScore[j].bitPattern) }
        for offset in 1...3 {
            let c = KernelScratch(taskCount: 3, capacity: 1000)
            let kc = f.user.withUnsafeBufferPointer { u in
                rows.withUnsafeBufferPointer { r in
                    f.index.scoreAndFilter(user: u.baseAddress!, rows: r.baseAddress! + offset, start: 0, count: 1000 - offset,
                                           chain: chain, fusion: fusion, relevance: nil, threshold: -.infinity, scratch: c)
                }
            }
            #expect(kc == 1000 - offset)
            for j in 0..<kc { #expect(c.keptScore[j].bitPattern == a.keptScore[j + offset].bitPattern) }
        }
    }

    /// The vectorised sigmoid is within a few ulp of libm's, saturates without overflow and
    /// keeps NaN.
    @Test func vectorSigmoidMatchesLibm() {
        var xs: [Float] = stride(from: -95.0, through: 95.0, by: 0.173).map { Float($0) }
        xs += [0, -0.0, 1e-8, -1e-8, 30, -30, 87, -87, .infinity, -.infinity, .nan, .greatestFiniteMagnitude]
        var ys = [Float](repeating: 0, count: xs.count)
        KernelBaselines.sigmoid(xs, &ys, count: xs.count)
        for (x, y) in zip(xs, ys) {
            if x.isNaN { #expect(y.isNaN); continue }
            let want = LogitChain.sigmoid(x)
            #expect(y.isFinite && y >= 0 && y <= 1, "σ(\(x)) = \(y)")
            if x > -80 { #expect(abs(y - want) <= 4 * want.ulp + 1e-30, "σ(\(x)) = \(y), libm \(want)") }
        }
    }

    /// The streaming-read baseline reads every byte (tails included).
    @Test func streamReadSumsEveryByte() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        for n in [0, 1, 127, 128, 129, 1000] {
            let sum = bytes.withUnsafeBytes { KernelBaselines.streamRead($0.baseAddress!, bytes: n) }
            // 64-bit lane sums wrap; compare with the same arithmetic.
            var want: UInt64 = 0
            let words = n / 128 * 16
            bytes.withUnsafeBytes { raw in
                for w in 0..<words { want &+= raw.loadUnaligned(fromByteOffset: w * 8, as: UInt64.self) }
                for i in (words * 8)..<n { want &+= UInt64(raw[i]) }
            }
            #expect(sum == want)
        }
    }
}
