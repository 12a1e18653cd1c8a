import CBLAS

/// A linear block `y = W·x + b` in PyTorch `nn.Linear` layout.
///
/// Shapes: `weight` is `[outDim × inDim]` row-major, `bias` is `[outDim]`.
public struct DenseLayer: Sendable, Equatable {
    public var inDim: Int
    public var outDim: Int
    public var weight: [Float]
    public var bias: [Float]

    public init(inDim: Int, outDim: Int, weight: [Float], bias: [Float]) {
        precondition(weight.count == inDim * outDim && bias.count == outDim)
        self.inDim = inDim
        self.outDim = outDim
        self.weight = weight
        self.bias = bias
    }

    /// `Y[B × out] = X[B × in] · Wᵀ + b` (row-major). One sgemv when B = 1, else one sgemm.
    ///
    /// - parameters:
    ///   - x: `batch × inDim` row-major.
    ///   - y: `batch × outDim` row-major, overwritten.
    public func apply(_ x: UnsafePointer<Float>?, batch: Int, into y: UnsafeMutablePointer<Float>) {
        for r in 0..<batch { (y + r * outDim).update(from: bias, count: outDim) }
        guard inDim > 0, outDim > 0, batch > 0, let x else { return }
        weight.withUnsafeBufferPointer { w in
            if batch == 1 {
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(outDim), Int32(inDim), 1, w.baseAddress, Int32(inDim),
                            x, 1, 1, y, 1)
            } else {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(batch), Int32(outDim), Int32(inDim),
                            1, x, Int32(inDim), w.baseAddress, Int32(inDim), 1, y, Int32(outDim))
            }
        }
    }
}
