import CBLAS

/// Element types the forward pass runs in: Float for training (speed), Double for inference
/// (the per-request user tower and the offline item tower), so served scores match a float64
/// reference to ~1e-6 relative instead of the ~3e-5 that float32 accumulation through the
/// towers gives (measured; see docs/ARCHITECTURE.md).
public protocol TowerScalar: BinaryFloatingPoint, Sendable {
    /// `C[M × N] = A[M × K] · Bᵀ + C` with B `[N × K]` (row-major), via BLAS.
    static func gemmNT(m: Int, n: Int, k: Int, a: UnsafePointer<Self>, b: UnsafePointer<Self>, c: UnsafeMutablePointer<Self>)
    /// `y[N] = W[N × K] · x + y` via BLAS.
    static func gemv(n: Int, k: Int, w: UnsafePointer<Self>, x: UnsafePointer<Self>, y: UnsafeMutablePointer<Self>)
    init(_ value: Float)
}

extension Float: TowerScalar {
    public static func gemmNT(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(k), 1, c, Int32(n))
    }
    public static func gemv(n: Int, k: Int, w: UnsafePointer<Float>, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(k), 1, w, Int32(k), x, 1, 1, y, 1)
    }
}

extension Double: TowerScalar {
    public static func gemmNT(m: Int, n: Int, k: Int, a: UnsafePointer<Double>, b: UnsafePointer<Double>, c: UnsafeMutablePointer<Double>) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(k), 1, c, Int32(n))
    }
    public static func gemv(n: Int, k: Int, w: UnsafePointer<Double>, x: UnsafePointer<Double>, y: UnsafeMutablePointer<Double>) {
        cblas_dgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(k), 1, w, Int32(k), x, 1, 1, y, 1)
    }
}

