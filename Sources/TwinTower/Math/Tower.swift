/// One side's task networks (user-query or item): for each task k an MLP of blocks
/// `l = 0..L-2` (hidden, ReLU) and a final linear block `L-1` of width `d`, with the optional
/// feature residual between tasks (SPEC §1):
///
///     o_k^l = relu(W_k^l · o_k^{l-1} + b_k^l) + [FR and k>0] · o_{k-1}^l      (o_k^{-1} = x)
///     u_k   = W_k^{L-1} · o_k^{L-2} + b_k^{L-1}
///
/// This is the only forward pass in prerank: training, `build-index`, `score` and the server call it.
public struct Tower: Sendable, Equatable {
    /// `layers[k][l]`: task k, block l.
    public var layers: [[DenseLayer]]
    public var featureResidual: Bool

    public init(layers: [[DenseLayer]], featureResidual: Bool) {
        self.layers = layers
        self.featureResidual = featureResidual
    }

    public var taskCount: Int { layers.count }
    public var blockCount: Int { layers.first?.count ?? 0 }
    public var inputWidth: Int { layers.first?.first?.inDim ?? 0 }
    public var outputWidth: Int { layers.first?.last?.outDim ?? 0 }

    /// Randomly initialised tower (He-uniform weights, zero biases), for training and tests.
    public init<G: RandomNumberGenerator>(inputWidth: Int, hidden: [Int], d: Int, tasks: Int, featureResidual: Bool,
                                          using rng: inout G) {
        var layers: [[DenseLayer]] = []
        for _ in 0..<tasks {
            var blocks: [DenseLayer] = []
            var width = inputWidth
            for out in hidden + [d] {
                let bound = Float((6.0 / Double(max(width, 1))).squareRoot()) * (out == d && blocks.count == hidden.count ? 0.5 : 1)
                let w = (0..<(out * width)).map { _ in Float.random(in: -bound...bound, using: &rng) }
                blocks.append(DenseLayer(inDim: width, outDim: out, weight: w, bias: [Float](repeating: 0, count: out)))
                width = out
            }
            layers.append(blocks)
        }
        self.init(layers: layers, featureResidual: featureResidual)
    }

    /// Activations of one forward pass over a batch.
    public struct Activations: Sendable {
        public let batch: Int
        /// `outputs[k][l]`: `o_k^l` (after ReLU and residual) for hidden blocks, `u_k` for the last;
        /// each `batch × width_l` row-major.
        public var outputs: [[[Float]]]
        /// `relu[k][l]`: `relu(W·o + b)` before the residual, for hidden blocks; kept only when
        /// asked (training needs it for the ReLU mask; serving does not).
        public var relu: [[[Float]]]

        /// The final outputs `u_k` (`batch × d`).
        public func final(task k: Int) -> [Float] { outputs[k][outputs[k].count - 1] }
    }

    /// Runs all task networks on a batch.
    ///
    /// - parameters:
    ///   - x: `batch × inputWidth` row-major tower inputs.
    ///   - batch: number of rows.
    ///   - keepPreResidual: keep `relu(...)` outputs before the residual (training).
    public func forward(_ x: UnsafeBufferPointer<Float>, batch: Int, keepPreResidual: Bool = false) -> Activations {
        precondition(x.count >= batch * inputWidth)
        var outputs = [[[Float]]](repeating: [], count: taskCount)
        var relus = [[[Float]]](repeating: [], count: keepPreResidual ? taskCount : 0)
        for k in 0..<taskCount {
            for l in 0..<blockCount {
                let layer = layers[k][l]
                var y = [Float](repeating: 0, count: batch * layer.outDim)
                y.withUnsafeMutableBufferPointer { yb in
                    guard let out = yb.baseAddress else { return }
                    if l == 0 {
                        layer.apply(x.baseAddress, batch: batch, into: out)
                    } else {
                        outputs[k][l - 1].withUnsafeBufferPointer { layer.apply($0.baseAddress, batch: batch, into: out) }
                    }
                }
                if l < blockCount - 1 {
                    for i in y.indices where y[i] < 0 { y[i] = 0 }
                    if keepPreResidual { relus[k].append(y) }
                    if featureResidual && k > 0 {
                        outputs[k - 1][l].withUnsafeBufferPointer { prev in
                            for i in y.indices { y[i] += prev[i] }
                        }
                    }
                }
                outputs[k].append(y)
            }
        }
        return Activations(batch: batch, outputs: outputs, relu: relus)
    }

    /// Final outputs for one input row: `[taskCount × d]` row-major (`u_k` at `k·d`).
    public func embed(_ x: [Float]) -> [Float] {
        let acts = x.withUnsafeBufferPointer { forward($0, batch: 1) }
        return (0..<taskCount).flatMap { acts.final(task: $0) }
    }
}
