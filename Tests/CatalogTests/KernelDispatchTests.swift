import CKernels
import Foundation
import Testing
@testable import Catalog
import TwinTower

/// The run-time kernel choice (Sources/CKernels): the portable C path, which a CPU without
/// AVX2/FMA/F16C (or `PRERANK_KERNEL=scalar`) runs, held to the same references and tolerances as
/// the AVX2 path, in this process whatever the CPU; the integer I8 path bit for bit.
@Suite struct KernelDispatchTests {
    let base = KernelTests()
    let portable = KernelTuning(i8Integer: false, implementation: .portable)

    /// Portable probabilities (gathered and contiguous) = the Swift scalar reference, within the
    /// tolerance the AVX2 path is held to (different summation order, libm sigmoid).
    @Test(arguments: [IndexDType.f32, .f16, .i8], [1, 8, 17, 67])
    func portableMatchesScalarReference(dtype: IndexDType, d: Int) throws {
        for t in [1, 3] {
            let f = try base.fixture(dtype: dtype, t: t, d: d)
            var rng = SplitMix64(seed: 5)
            let rows: [Int32] = (0..<300).map { _ in Int32(rng.next() % UInt64(f.n)) }
            for chain in KernelTests.chains(t: t) {
                var gathered = [Float](repeating: 0, count: rows.count * t)
                var range = [Float](repeating: 0, count: 259 * t)
                f.user.withUnsafeBufferPointer { u in
                    f.index.probabilities(user: u.baseAddress!, rows: rows, count: rows.count, chain: chain, tuning: portable, into: &gathered)
                    var scan = portable
                    scan.prefetch = 4
                    f.index.probabilities(user: u.baseAddress!, range: 13..<272, chain: chain, tuning: scan, into: &range)
                }
                for (i, r) in rows.enumerated() {
                    let expected = f.index.scalarReference(user: f.user, row: Int(r), chain: chain)
                    for k in 0..<t { #expect(abs(gathered[i * t + k] - expected[k]) <= 2e-6 + 1e-5 * expected[k], "row \(r) task \(k)") }
                }
                for i in 0..<259 {
                    let expected = f.index.scalarReference(user: f.user, row: 13 + i, chain: chain)
                    for k in 0..<t { #expect(abs(range[i * t + k] - expected[k]) <= 2e-6 + 1e-5 * expected[k]) }
                }
            }
        }
    }

    /// The I8 integer path is an exact integer sum times one float product on both paths, so the
    /// dots are the same bits; F32/F16 dots agree within float rounding of the sum order.
    @Test(arguments: [IndexDType.f32, .f16, .i8], [16, 33, 64])
    func portableDotsAgreeWithDispatched(dtype: IndexDType, d: Int) throws {
        let f = try base.fixture(dtype: dtype, t: 3, d: d)
        let chain = KernelTests.chains(t: 3)[0]
        let rows: [Int32] = (0..<257).map { Int32(($0 * 7) % f.n) }
        var a = [Float](repeating: 0, count: rows.count * 3), b = a
        f.user.withUnsafeBufferPointer { u in
            f.index.dots(user: u.baseAddress!, rows: rows, count: rows.count, chain: chain, into: &a)
            f.index.dots(user: u.baseAddress!, rows: rows, count: rows.count, chain: chain,
                         tuning: KernelTuning(implementation: .portable), into: &b)
        }
        for i in a.indices {
            if dtype == .i8 {
                #expect(a[i].bitPattern == b[i].bitPattern, "I8 integer dot \(i): \(a[i]) vs \(b[i])")
            } else {
                #expect(abs(a[i] - b[i]) <= 1e-5 * Float(d).squareRoot(), "dot \(i): \(a[i]) vs \(b[i])")
            }
        }
    }

    /// The portable fused pass keeps `!(score < threshold)` of its own scores, and those scores are
    /// the dispatched path's within the probability tolerance.
    @Test(arguments: [IndexDType.f32, .i8])
    func portableScoreFilter(dtype: IndexDType) throws {
        let f = try base.fixture(dtype: dtype, n: 2000, d: 64)
        let chain = KernelTests.chains(t: 3)[0]
        let fusion = FusedScoring(formula: .additive, alpha: 1, beta: 20, gamma: 0)
        let rows = (0..<1000).map { Int32(($0 * 13) % f.n) }
        let a = KernelScratch(taskCount: 3, capacity: 1000), b = KernelScratch(taskCount: 3, capacity: 1000)
        let (ka, kb) = f.user.withUnsafeBufferPointer { u in
            rows.withUnsafeBufferPointer { r in
                (f.index.scoreAndFilter(user: u.baseAddress!, rows: r.baseAddress!, start: 0, count: rows.count, chain: chain,
                                        fusion: fusion, relevance: nil, threshold: -.infinity, scratch: a),
                 f.index.scoreAndFilter(user: u.baseAddress!, rows: r.baseAddress!, start: 0, count: rows.count, chain: chain,
                                        fusion: fusion, relevance: nil, threshold: -.infinity, scratch: b,
                                        tuning: KernelTuning(implementation: .portable)))
            }
        }
        #expect(ka == rows.count && kb == rows.count)
        for j in 0..<min(ka, kb) {
            #expect(a.keptIndex[j] == b.keptIndex[j])
            #expect(abs(a.keptScore[j] - b.keptScore[j]) <= 1e-4 * max(1, abs(a.keptScore[j])))
        }
    }

    /// The choice is one of the two names, follows PRERANK_KERNEL=scalar, and is AVX2 on a CPU
    /// that has it otherwise (never a path the CPU cannot run).
    @Test func kernelChoiceFollowsCPUAndEnvironment() {
        let isa = ItemIndex.kernelISA
        #expect(isa == "avx2" || isa == "scalar")
        let env = ProcessInfo.processInfo.environment["PRERANK_KERNEL"]
        if env == "scalar" {
            #expect(isa == "scalar")
        } else {
            #expect(isa == (pk_cpu_has_avx2() != 0 ? "avx2" : "scalar"))
        }
    }
}
