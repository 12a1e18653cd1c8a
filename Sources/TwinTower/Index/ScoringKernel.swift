/// Candidate scoring kernels: gather index rows, T dot products, logit chain.
///
/// Shapes and layout:
///   user      `[T × d]` F32, row-major (`u_k` at `k·d`)
///   vectors   `[N × T × d]` of the index dtype; row r, task k at `(r·T + k)·d`
///   scales    `[N × T]` F32 (I8 only)
///   rows      `[n]` Int32 row numbers (gathered candidates), or a contiguous range (full scan)
///   out       `[n × T]` F32 probabilities, candidate-major
///
/// Dot products run on 8-wide SIMD with two accumulators (FMA: the target is built with
/// `-target-cpu haswell`), with a scalar tail for `d % 8`. The dtype is dispatched once per
/// call, outside the candidate loop. `scalarReference` is the plain loop the SIMD paths are
/// tested against.
extension ItemIndex {
    /// Probabilities for gathered candidate rows (all rows must be valid).
    public func probabilities(user: UnsafePointer<Float>, rows: UnsafePointer<Int32>, count n: Int,
                              chain: LogitChain, into out: UnsafeMutablePointer<Float>) {
        run(user: user, count: n, chain: chain, out: out) { rows[$0] }
    }

    /// Probabilities for the contiguous rows `range` (full-index scan, no gather).
    public func probabilities(user: UnsafePointer<Float>, range: Range<Int>,
                              chain: LogitChain, into out: UnsafeMutablePointer<Float>) {
        let start = Int32(range.lowerBound)
        run(user: user, count: range.count, chain: chain, out: out) { start + Int32($0) }
    }

    @inline(__always)
    private func run(user: UnsafePointer<Float>, count n: Int, chain: LogitChain, out: UnsafeMutablePointer<Float>,
                     row: (Int) -> Int32) {
        let t = taskCount, d = self.d
        withUnsafeTemporaryAllocation(of: Float.self, capacity: t) { dotsBuffer in
            guard let dots = dotsBuffer.baseAddress else { return }
            switch dtype {
            case .f32:
                let v = vectors.assumingMemoryBound(to: Float.self)
                for i in 0..<n {
                    let base = v + Int(row(i)) * t * d
                    for k in 0..<t { dots[k] = Kernels.dotF32(user + k * d, base + k * d, d) }
                    chain.apply(dots: dots, probabilities: out + i * t)
                }
            case .f16:
                let v = vectors.assumingMemoryBound(to: Float16.self)
                for i in 0..<n {
                    let base = v + Int(row(i)) * t * d
                    for k in 0..<t { dots[k] = Kernels.dotF16(user + k * d, base + k * d, d) }
                    chain.apply(dots: dots, probabilities: out + i * t)
                }
            case .i8:
                let v = vectors.assumingMemoryBound(to: Int8.self)
                let s = scales ?? UnsafePointer(dots)  // scales are present for I8 (checked at load)
                for i in 0..<n {
                    let r = Int(row(i))
                    let base = v + r * t * d
                    for k in 0..<t { dots[k] = Kernels.dotI8(user + k * d, base + k * d, d) * s[r * t + k] }
                    chain.apply(dots: dots, probabilities: out + i * t)
                }
            }
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
