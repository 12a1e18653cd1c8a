import CKernels
import TwinTower

/// Candidate scoring kernels: gather index rows, T dot products, logit chain, sigmoid, fusion.
///
/// Shapes and layout:
///   user      `[T × d]` F32, row-major (`u_k` at `k·d`)
///   vectors   `[N × T × d]` of the index dtype; row r, task k at `(r·T + k)·d`
///   scales    `[N × T]` F32 (I8 only)
///   rows      `[n]` Int32 row numbers (gathered candidates), or a contiguous range (full scan)
///   out       `[n × T]` F32 probabilities, candidate-major
///
/// The hot loop is C (`Sources/CKernels/ckernels.c`), chosen at run time (`kernelISA`): AVX2 when
/// the CPU has it, else a portable C path with the same block structure. Per block of 256 candidates it gathers
/// each row in place from the mapping while prefetching the row `prefetch` candidates ahead,
/// computes the T dots with AVX2 FMA (F16 via F16C, I8 widened to F32 and scaled per row), runs
/// the logit chain and a vectorised sigmoid 8 candidates at a time, then fuses in Double (the
/// exact expression of `FusionPolicy.score`) and keeps only candidates not below the caller's
/// top-K threshold. The dtype is dispatched once per call; nothing is allocated per candidate.
/// `scalarReference` (Swift) and `scalarProbabilitiesC` (C) are the plain loops the SIMD path
/// is tested against.
extension ItemIndex {
    /// Rows prefetched ahead when gathering (measured: 8–64 are within noise of each other on
    /// the SPEC-scale gather; docs/PERFORMANCE.md "Gather kernel").
    public static let defaultPrefetch = 16
    /// Rows prefetched ahead on a contiguous (whole-index) scan: a little help past 4 KB page
    /// boundaries for the hardware prefetcher (measured: 4 ≈ 16 ≈ 64, all better than 0).
    public static let scanPrefetch = 4

    /// The kernel implementation in use, chosen at the first kernel call: `"avx2"` when the CPU
    /// has AVX2, FMA and F16C, `"scalar"` (portable C) otherwise or when `PRERANK_KERNEL=scalar`.
    /// Reported by `/v1/model`, `prerank_build_info{kernel}` and the `prerank bench` header.
    public static var kernelISA: String { String(cString: pk_kernel_isa()) }

    /// Which vectors a kernel call reads: the index's own (`vectors`, in its dtype) or its F32
    /// `rescore` rows (exact rescoring of the best candidates of a quantised scan).
    public enum VectorSource: Sendable { case primary, rescore }

    /// Probabilities for gathered candidate rows (all rows must be valid).
    public func probabilities(user: UnsafePointer<Float>, rows: UnsafePointer<Int32>, count n: Int,
                              chain: LogitChain, source: VectorSource = .primary, tuning: KernelTuning = KernelTuning(),
                              into out: UnsafeMutablePointer<Float>) {
        guard n > 0 else { return }
        withKernel(user: user, chain: chain, tuning: tuning, source: source) { kernel in
            withScratch { scratch in
                tuning.implementation == .portable ? pk_probabilities_portable(kernel, rows, 0, Int64(n), scratch, out)
                    : pk_probabilities(kernel, rows, 0, Int64(n), scratch, out)
            }
        }
    }

    /// The raw dots `<u_k, v_k>` of gathered rows, candidate-major `[n × T]` (tests hold each
    /// arithmetic path to its reference with these).
    public func dots(user: UnsafePointer<Float>, rows: UnsafePointer<Int32>, count n: Int, chain: LogitChain,
                     source: VectorSource = .primary, tuning: KernelTuning = KernelTuning(), into out: UnsafeMutablePointer<Float>) {
        guard n > 0 else { return }
        withKernel(user: user, chain: chain, tuning: tuning, source: source) { kernel in
            withScratch { scratch in
                tuning.implementation == .portable ? pk_dots_portable(kernel, rows, 0, Int64(n), scratch, out)
                    : pk_dots(kernel, rows, 0, Int64(n), scratch, out)
            }
        }
    }

    /// Probabilities for the contiguous rows `range` (full-index scan, no gather).
    public func probabilities(user: UnsafePointer<Float>, range: Range<Int>, chain: LogitChain,
                              tuning: KernelTuning = KernelTuning(prefetch: ItemIndex.scanPrefetch),
                              into out: UnsafeMutablePointer<Float>) {
        guard !range.isEmpty else { return }
        withKernel(user: user, chain: chain, tuning: tuning, source: .primary) { kernel in
            withScratch { scratch in
                tuning.implementation == .portable
                    ? pk_probabilities_portable(kernel, nil, Int64(range.lowerBound), Int64(range.count), scratch, out)
                    : pk_probabilities(kernel, nil, Int64(range.lowerBound), Int64(range.count), scratch, out)
            }
        }
    }

    /// The fused pass: scores candidates (gathered `rows`, or the contiguous rows from `start`
    /// when `rows` is nil), fuses CTR and CTCVR with `fusion`, and keeps the candidates whose
    /// score is not below `threshold` (`!(score < threshold)`: ties and NaN are kept for the
    /// caller's top-K to decide). Kept positions (0 ..< count) and scores are left in
    /// `scratch.keptIndex` / `scratch.keptScore`; returns how many were kept.
    ///
    /// Skipping the rest is exact: a candidate below the current K-th best can never enter a
    /// top-K whose order is total (score, then id).
    ///
    /// - parameters:
    ///   - relevance: `count` levels, or nil for 0.
    ///   - scratch: per-thread buffers with `capacity >= count`.
    ///   - source: `.rescore` reads the F32 rescore rows (the index must have them).
    public func scoreAndFilter(user: UnsafePointer<Float>, rows: UnsafePointer<Int32>?, start: Int, count n: Int,
                               chain: LogitChain, fusion: FusedScoring, relevance: UnsafePointer<Float>?,
                               threshold: Double, scratch: KernelScratch,
                               tuning: KernelTuning = KernelTuning(), source: VectorSource = .primary) -> Int {
        precondition(n <= scratch.capacity && scratch.taskCount == taskCount, "scratch too small")
        guard n > 0 else { return 0 }
        var f = pk_fusion(formula: fusion.formula == .additive ? Int32(PK_ADDITIVE) : Int32(PK_MULTIPLICATIVE),
                          reserved: 0, alpha: fusion.alpha, beta: fusion.beta, gamma: fusion.gamma)
        return withKernel(user: user, chain: chain, tuning: tuning, source: source) { kernel in
            let filter = tuning.implementation == .portable ? pk_score_filter_portable : pk_score_filter
            return Int(filter(kernel, &f, rows, Int64(start), Int64(n), relevance, threshold,
                              scratch.floats, scratch.keptIndex, scratch.keptScore))
        }
    }

    /// The plain C scalar loop (libm `expf`), for tests and the benchmark's naive baseline.
    public func scalarProbabilitiesC(user: UnsafePointer<Float>, rows: UnsafePointer<Int32>?, start: Int, count n: Int,
                                     chain: LogitChain, into out: UnsafeMutablePointer<Float>) {
        withKernel(user: user, chain: chain, tuning: KernelTuning(prefetch: 0, i8Integer: false), source: .primary) { kernel in
            pk_probabilities_scalar(kernel, rows, Int64(start), Int64(n), out)
        }
    }

    @inline(__always)
    private func withKernel<R>(user: UnsafePointer<Float>, chain: LogitChain, tuning: KernelTuning, source: VectorSource,
                               _ body: (UnsafePointer<pk_kernel>) -> R) -> R {
        precondition(chain.taskCount == taskCount, "the chain has \(chain.taskCount) tasks, the index \(taskCount)")
        let (base, kind): (UnsafeRawPointer, IndexDType)
        switch source {
        case .primary: (base, kind) = (vectors, dtype)
        case .rescore:
            guard let rescore else { preconditionFailure("the index \(path) has no rescore rows") }
            (base, kind) = (rescore, .f32)
        }
        let integer = kind == .i8 && tuning.i8Integer
        return chain.headBias.withUnsafeBufferPointer { bias in
            // The I8 integer path needs the user vector quantised (T·d bytes and T scales, on the stack).
            withUnsafeTemporaryAllocation(of: Int8.self, capacity: integer ? taskCount * d : 1) { q in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: integer ? taskCount : 1) { qs in
                    if integer { pk_quantize_user(user, Int32(taskCount), Int32(d), q.baseAddress!, qs.baseAddress!) }
                    var kernel = pk_kernel(
                        vectors: base, scales: kind == .i8 ? scales : nil, user: user, head_bias: bias.baseAddress,
                        dtype: kind == .f32 ? Int32(PK_F32) : kind == .f16 ? Int32(PK_F16) : Int32(PK_I8),
                        t: Int32(taskCount), d: Int32(d),
                        chain: chain.chain == .additive ? Int32(PK_ADDITIVE) : Int32(PK_MULTIPLICATIVE),
                        logit_residual: chain.logitResidual ? 1 : 0, clamp: chain.clamp ? 1 : 0,
                        prefetch: Int32(tuning.prefetch), i8_integer: integer ? 1 : 0,
                        prefetch_mode: tuning.rowPrefetch == .l1Lines ? 0 : 1,
                        user_q: integer ? UnsafePointer(q.baseAddress!) : nil,
                        user_scale: integer ? UnsafePointer(qs.baseAddress!) : nil)
                    return withUnsafePointer(to: &kernel) { body($0) }
                }
            }
        }
    }

    /// Block scratch for the probability paths (a few KB, on the stack).
    @inline(__always)
    private func withScratch(_ body: (UnsafeMutablePointer<Float>) -> Void) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: pk_scratch_floats(Int32(taskCount)) + 8) { buffer in
            body(buffer.baseAddress!)
        }
    }

    /// The plain scalar computation of the same probabilities, for tests and benchmarks.
    public func scalarReference(user: [Float], row: Int, chain: LogitChain) -> [Float] {
        let dots = (0..<taskCount).map { k -> Float in
            let v = vector(row: row, task: k)
            var s: Float = 0
            for j in 0..<d { s += user[k * d + j] * v[j] }
            return s
        }
        return chain.probabilities(dots: dots)
    }
}

/// How the kernel walks memory and which I8 arithmetic it uses. The defaults are the measured
/// best (docs/PERFORMANCE.md); the other settings exist so the benchmark can measure them side by
/// side in one run.
public struct KernelTuning: Sendable, Equatable {
    /// How a gathered F32 row is prefetched.
    public enum RowPrefetch: Sendable, Equatable {
        /// `prefetcht0` of every 64-byte line (the default).
        case l1Lines
        /// `prefetcht1` once per 128-byte pair of lines (the L2 fetches the other line); measured
        /// no faster inside the kernel, kept so the benchmark can show it.
        case l2Pairs
    }
    /// Rows ahead to prefetch (0 = none).
    public var prefetch: Int
    public var rowPrefetch: RowPrefetch
    /// I8 indexes: integer dot products against the user vector quantised per request (true),
    /// or int8 widened to F32 (false; the reference the error model is stated against).
    public var i8Integer: Bool
    /// Which C implementation runs the call.
    public enum Implementation: Sendable, Equatable {
        /// The one chosen at run time (`ItemIndex.kernelISA`): what serving uses.
        case dispatched
        /// The portable C path whatever the CPU has (tests hold it to the references in the
        /// same process as the AVX2 path).
        case portable
    }
    public var implementation: Implementation

    public init(prefetch: Int = ItemIndex.defaultPrefetch, rowPrefetch: RowPrefetch = .l1Lines, i8Integer: Bool = true,
                implementation: Implementation = .dispatched) {
        self.prefetch = prefetch
        self.rowPrefetch = rowPrefetch
        self.i8Integer = i8Integer
        self.implementation = implementation
    }
}

/// Fusion of CTR and CTCVR as the kernel computes it (TwinTower does not depend on Fusion; the
/// engine maps `FusionPolicy` onto this). Additive: `α·ctr + β·ctcvr + γ·relevance`;
/// multiplicative: `ctr^α · ctcvr^β`. Both in Double, bit-identical to `FusionPolicy.score`.
public struct FusedScoring: Sendable, Equatable {
    public enum Formula: Sendable, Equatable { case additive, multiplicative }
    public var formula: Formula
    public var alpha: Double
    public var beta: Double
    public var gamma: Double
    public init(formula: Formula, alpha: Double, beta: Double, gamma: Double) {
        self.formula = formula
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
    }
}

/// Per-thread buffers for `scoreAndFilter`: allocated once per scan, reused for every block.
public final class KernelScratch {
    public let taskCount: Int
    /// Most candidates one `scoreAndFilter` call may take.
    public let capacity: Int
    let floats: UnsafeMutablePointer<Float>
    /// Positions (0 ..< count) of the kept candidates of the last call.
    public let keptIndex: UnsafeMutablePointer<Int32>
    /// Their fused scores.
    public let keptScore: UnsafeMutablePointer<Double>

    public init(taskCount: Int, capacity: Int) {
        self.taskCount = taskCount
        self.capacity = capacity
        let f = pk_scratch_floats(Int32(taskCount))
        floats = UnsafeMutableRawPointer.allocate(byteCount: f * 4, alignment: 64).bindMemory(to: Float.self, capacity: f)
        keptIndex = .allocate(capacity: max(capacity, 1))
        keptScore = .allocate(capacity: max(capacity, 1))
    }

    deinit {
        UnsafeMutableRawPointer(floats).deallocate()
        keptIndex.deallocate()
        keptScore.deallocate()
    }
}

/// Raw kernels the benchmark uses as baselines.
public enum KernelBaselines {
    /// Reads `bytes` bytes from `base` (AVX2 loads, or 64-bit words on the portable path): the
    /// streaming-bandwidth baseline.
    public static func streamRead(_ base: UnsafeRawPointer, bytes: Int) -> UInt64 { pk_stream_read(base, bytes) }
    /// The kernel's sigmoid (vectorised on AVX2, libm on the portable path; tests compare with libm).
    public static func sigmoid(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        pk_sigmoid(x, y, Int64(count))
    }
}
