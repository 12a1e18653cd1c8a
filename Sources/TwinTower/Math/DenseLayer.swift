/// A linear block `y = W·x + b` in PyTorch `nn.Linear` layout (applied by `Tower.forwardBlocks`).
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
}
