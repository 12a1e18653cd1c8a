import CKernels

/// Candidate scoring kernels: gather index rows, T dot products, logit chain, sigmoid, fusion.
///
/// Shapes and layout:
///   user      `[T × d]` F32, row-major (`u_k` at `k·d`)
///   vectors   `[N × T × d]` of the index dtype; row r, task k at `(r·T + k)·d`
///   scales    `[N × T]` F32 (I8 only)
///   rows      `[n]` Int32 row numbers (gathered candidates), or a contiguous range (full scan)
///   out       `[n × T]` F32 probabilities, candidate-major
///
/// The hot loop is C (`Sources/CKernels/ckernels.c`): per block of 256 candidates it gathers
/// each row in place from the mapping while prefetching the row `prefetch` candidates ahead,
/// computes the T dots with AVX2 FMA (F16 via F16C, I8 widened to F32 and scaled per row), runs
/// the logit chain and a vectorised sigmoid 8 candidates at a time, then fuses in Double (the
/// exact expression of `FusionPolicy.score`) and keeps only candidates not below the caller's
/// top-K threshold. The dtype is dispatched once per call; nothing is allocated per candidate.
/// `scalarReference` (Swift) and `scalarProbabilitiesC` (C) are the plain loops the SIMD path
/// is tested against.
extension ItemIndex {
    /// Rows prefetched ahead when gathering (16 rows ≈ 12 KB of F32 rows in flight).
    public static let defaultPrefetch = 16
    /// Rows prefetched ahead on a contiguous (whole-index) scan: a little help past 4 KB page
    /// boundaries for the hardware prefetcher (measured: 4 ≈ 16 ≈ 64, all better than 0).
    public static let scanPrefetch = 4

    /// Probabilities for gathered candidate rows (all rows must be valid).
    public func probabilities(user: UnsafePointer<Float>, rows: UnsafePointer<Int32>, count n: Int,
                              chain: LogitChain, into out: UnsafeMutablePointer<Float>) {
        guard n > 0 else { return }
        withKernel(user: user, chain: chain, prefetch: Self.defaultPrefetch) { kernel in
            withScratch { scratch in pk_probabilities(kernel, rows, 0, Int64(n), scratch, out) }
        }
    }

    /// Probabilities for the contiguous rows `range` (full-index scan, no gather).
    public func probabilities(user: UnsafePointer<Float>, range: Range<Int>,
                              chain: LogitChain, into out: UnsafeMutablePointer<Float>) {
        guard !range.isEmpty else { return }
        withKernel(user: user, chain: chain, prefetch: Self.scanPrefetch) { kernel in
            withScratch { scratch in pk_probabilities(kernel, nil, Int64(range.lowerBound), Int64(range.count), scratch, out) }
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
    public func scoreAndFilter(user: UnsafePointer<Float>, rows: UnsafePointer<Int32>?, start: Int, count n: Int,
                               chain: LogitChain, fusion: FusedScoring, relevance: UnsafePointer<Float>?,
                               threshold: Double, scratch: KernelScratch,
                               prefetch: Int = ItemIndex.defaultPrefetch) -> Int {
        precondition(n <= scratch.capacity && scratch.taskCount == taskCount, "scratch too small")
        guard n > 0 else { return 0 }
        var f = pk_fusion(formula: fusion.formula == .additive ? Int32(PK_ADDITIVE) : Int32(PK_MULTIPLICATIVE),
                          reserved: 0, alpha: fusion.alpha, beta: fusion.beta, gamma: fusion.gamma)
        return withKernel(user: user, chain: chain, prefetch: prefetch) { kernel in
            Int(pk_score_filter(kernel, &f, rows, Int64(start), Int64(n), relevance, threshold,
                                scratch.floats, scratch.keptIndex, scratch.keptScore))
        }
    }

    /// The plain C scalar loop (libm `expf`), for tests and the benchmark's naive baseline.
    public func scalarProbabilitiesC(user: UnsafePointer<Float>, rows: UnsafePointer<Int32>?, start: Int, count n: Int,
                                     chain: LogitChain, into out: UnsafeMutablePointer<Float>) {
        withKernel(user: user, chain: chain, prefetch: 0) { kernel in
            pk_probabilities_scalar(kernel, rows, Int64(start), Int64(n), out)
        }
    }

    @inline(__always)
    private func withKernel<R>(user: UnsafePointer<Float>, chain: LogitChain, prefetch: Int,
                               _ body: (UnsafePointer<pk_kernel>) -> R) -> R {
        precondition(chain.taskCount == taskCount, "the chain has \(chain.taskCount) tasks, the index \(taskCount)")
        return chain.headBias.withUnsafeBufferPointer { bias in
            var kernel = pk_kernel(
                vectors: vectors, scales: scales, user: user, head_bias: bias.baseAddress,
                dtype: dtype == .f32 ? Int32(PK_F32) : dtype == .f16 ? Int32(PK_F16) : Int32(PK_I8),
                t: Int32(taskCount), d: Int32(d),
                chain: chain.chain == .additive ? Int32(PK_ADDITIVE) : Int32(PK_MULTIPLICATIVE),
                logit_residual: chain.logitResidual ? 1 : 0, clamp: chain.clamp ? 1 : 0,
                prefetch: Int32(prefetch), reserved: 0)
            return withUnsafePointer(to: &kernel) { body($0) }
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
    /// Reads `bytes` bytes from `base` with AVX2 loads (the streaming-bandwidth baseline).
    public static func streamRead(_ base: UnsafeRawPointer, bytes: Int) -> UInt64 { pk_stream_read(base, bytes) }
    /// The kernel's vectorised sigmoid (tests compare it with libm).
    public static func sigmoid(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        pk_sigmoid(x, y, Int64(count))
    }
}

/// SIMD dot products `<a, b>` of length `d`, `a` F32 and `b` in the index dtype.
public enum Kernels {
    @inline(__always)
    public static func dotF32(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ d: Int) -> Float {
        var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
        var j = 0
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        while j + 16 <= d {
            acc0.addProduct(ra.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self),
                            rb.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self))
            acc1.addProduct(ra.loadUnaligned(fromByteOffset: (j + 8) * 4, as: SIMD8<Float>.self),
                            rb.loadUnaligned(fromByteOffset: (j + 8) * 4, as: SIMD8<Float>.self))
            j += 16
        }
        if j + 8 <= d {
            acc0.addProduct(ra.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self),
                            rb.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self))
            j += 8
        }
        var s = (acc0 + acc1).sum()
        while j < d { s += a[j] * b[j]; j += 1 }
        return s
    }

    @inline(__always)
    public static func dotF16(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float16>, _ d: Int) -> Float {
        var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
        var j = 0
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        while j + 16 <= d {
            let h0 = rb.loadUnaligned(fromByteOffset: j * 2, as: SIMD8<Float16>.self)
            let h1 = rb.loadUnaligned(fromByteOffset: (j + 8) * 2, as: SIMD8<Float16>.self)
            acc0.addProduct(ra.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self), SIMD8<Float>(h0))
            acc1.addProduct(ra.loadUnaligned(fromByteOffset: (j + 8) * 4, as: SIMD8<Float>.self), SIMD8<Float>(h1))
            j += 16
        }
        if j + 8 <= d {
            let h0 = rb.loadUnaligned(fromByteOffset: j * 2, as: SIMD8<Float16>.self)
            acc0.addProduct(ra.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self), SIMD8<Float>(h0))
            j += 8
        }
        var s = (acc0 + acc1).sum()
        while j < d { s += a[j] * Float(b[j]); j += 1 }
        return s
    }

    /// `<a, q>` for int8 `q`; the caller multiplies by the row's scale.
    @inline(__always)
    public static func dotI8(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Int8>, _ d: Int) -> Float {
        var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
        var j = 0
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        while j + 16 <= d {
            let q = rb.loadUnaligned(fromByteOffset: j, as: SIMD16<Int8>.self)
            let wide = SIMD16<Int32>(truncatingIfNeeded: q)
            acc0.addProduct(ra.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self), SIMD8<Float>(wide.lowHalf))
            acc1.addProduct(ra.loadUnaligned(fromByteOffset: (j + 8) * 4, as: SIMD8<Float>.self), SIMD8<Float>(wide.highHalf))
            j += 16
        }
        if j + 8 <= d {
            let q = rb.loadUnaligned(fromByteOffset: j, as: SIMD8<Int8>.self)
            acc0.addProduct(ra.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self),
                            SIMD8<Float>(SIMD8<Int32>(truncatingIfNeeded: q)))
            j += 8
        }
        var s = (acc0 + acc1).sum()
        while j < d { s += a[j] * Float(b[j]); j += 1 }
        return s
    }
}
