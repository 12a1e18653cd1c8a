/// One side's task networks (user-query or item): for each task k an MLP of blocks
/// `l = 0..L-2` (hidden, ReLU) and a final linear block `L-1` of width `d`, with the optional
/// feature residual between tasks (SPEC §1):
///
///     o_k^l = relu(W_k^l · o_k^{l-1} + b_k^l) + [FR and k>0] · o_{k-1}^l      (o_k^{-1} = x)
///     u_k   = W_k^{L-1} · o_k^{L-2} + b_k^{L-1}
///
/// `forwardBlocks` is the only implementation of these equations in prerank: training runs it in
/// Float (`forward`, keeping activations for the backward pass); `build-index`, `score` and the
/// server run it in Double (`embed`, `embedBatch`) through a promoted copy of the weights.
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

    /// Runs all task networks on a batch in Float (training).
    ///
    /// - parameters:
    ///   - x: `batch × inputWidth` row-major tower inputs.
    ///   - batch: number of rows.
    ///   - keepPreResidual: keep `relu(...)` outputs before the residual (training).
    public func forward(_ x: UnsafeBufferPointer<Float>, batch: Int, keepPreResidual: Bool = false) -> Activations {
        precondition(x.count >= batch * inputWidth)
        let weights = layers.map { $0.map { ($0.weight, $0.bias) } }
        let (outputs, relus) = Self.forwardBlocks(weights: weights, shapes: shapes, featureResidual: featureResidual,
                                                  x: x, batch: batch, keepPreResidual: keepPreResidual)
        return Activations(batch: batch, outputs: outputs, relu: relus)
    }

    var shapes: [[(inDim: Int, outDim: Int)]] { layers.map { $0.map { ($0.inDim, $0.outDim) } } }

    /// The tower's equations, once, for any scalar type.
    ///
    /// Shapes: `x` `[batch × in]`; `weights[k][l]` = (W `[out × in]`, b `[out]`) row-major;
    /// returns `outputs[k][l]` `[batch × out]` and, when kept, the pre-residual ReLU outputs.
    static func forwardBlocks<S: TowerScalar>(weights: [[([S], [S])]], shapes: [[(inDim: Int, outDim: Int)]],
                                              featureResidual: Bool, x: UnsafeBufferPointer<S>, batch: Int,
                                              keepPreResidual: Bool) -> ([[[S]]], [[[S]]]) {
        let tasks = weights.count
        let blocks = weights.first?.count ?? 0
        var outputs = [[[S]]](repeating: [], count: tasks)
        var relus = [[[S]]](repeating: [], count: keepPreResidual ? tasks : 0)
        guard batch > 0 else { return (outputs, relus) }
        for k in 0..<tasks {
            for l in 0..<blocks {
                let (inDim, outDim) = shapes[k][l]
                let (w, b) = weights[k][l]
                let count = batch * outDim
                // The elementwise work runs on raw buffers: Array subscripts here (bias fill, ReLU,
                // residual) cost as much as the GEMM at training batch sizes (perf, docs/TRAINING.md).
                var preResidual: [S] = []
                let y = [S](unsafeUninitializedCapacity: count) { yb, initialised in
                    let out = yb.baseAddress!
                    b.withUnsafeBufferPointer { bias in
                        for r in 0..<batch { (out + r * outDim).initialize(from: bias.baseAddress!, count: outDim) }
                    }
                    initialised = count
                    if inDim > 0 {
                        w.withUnsafeBufferPointer { wb in
                            func apply(_ input: UnsafePointer<S>) {
                                if batch == 1 {
                                    S.gemv(n: outDim, k: inDim, w: wb.baseAddress!, x: input, y: out)
                                } else {
                                    S.gemmNT(m: batch, n: outDim, k: inDim, a: input, b: wb.baseAddress!, c: out)
                                }
                            }
                            if l == 0 {
                                if let base = x.baseAddress { apply(base) }
                            } else {
                                outputs[k][l - 1].withUnsafeBufferPointer { apply($0.baseAddress!) }
                            }
                        }
                    }
                    guard l < blocks - 1 else { return }
                    // `max`, not `if out[i] < 0 { out[i] = 0 }`: the sign of a pre-activation is
                    // a coin flip the branch predictor cannot learn, and LLVM keeps a select that
                    // stores nothing in one arm as a branch; an unconditional store of max(v, 0)
                    // vectorises (maxps). Same values, except -0 becomes +0; NaN stays NaN.
                    for i in 0..<count { out[i] = max(out[i], 0) }
                    if keepPreResidual { preResidual = Array(UnsafeBufferPointer(start: out, count: count)) }
                    if featureResidual && k > 0 {
                        outputs[k - 1][l].withUnsafeBufferPointer { prev in
                            let p = prev.baseAddress!
                            for i in 0..<count { out[i] += p[i] }
                        }
                    }
                }
                if keepPreResidual && l < blocks - 1 { relus[k].append(preResidual) }
                outputs[k].append(y)
            }
        }
        return (outputs, relus)
    }

    /// The tower with its weights promoted to Double, for inference.
    public var precise: PreciseTower { PreciseTower(self) }

    /// Final outputs for one input row in Double precision: `[taskCount × d]` row-major
    /// (`u_k` at `k·d`), rounded to Float. Hot callers keep a `PreciseTower` instead.
    public func embed(_ x: [Float]) -> [Float] { precise.embed(x) }
}

/// A tower's weights in Double, made once per model load: inference (`score`, the server,
/// `build-index`, `eval`) runs `Tower.forwardBlocks` on it.
public struct PreciseTower: Sendable {
    let weights: [[([Double], [Double])]]
    let shapes: [[(inDim: Int, outDim: Int)]]
    let featureResidual: Bool
    public let taskCount: Int
    public let outputWidth: Int
    public let inputWidth: Int

    public init(_ tower: Tower) {
        weights = tower.layers.map { $0.map { ($0.weight.map(Double.init), $0.bias.map(Double.init)) } }
        shapes = tower.shapes
        featureResidual = tower.featureResidual
        taskCount = tower.taskCount
        outputWidth = tower.outputWidth
        inputWidth = tower.inputWidth
    }

    /// Final outputs of `batch` rows: `[batch × T × d]` row-major, rounded to Float.
    public func embedBatch(_ x: UnsafeBufferPointer<Float>, batch: Int) -> [Float] {
        let xd = x.prefix(batch * inputWidth).map(Double.init)
        let (outputs, _) = xd.withUnsafeBufferPointer {
            Tower.forwardBlocks(weights: weights, shapes: shapes, featureResidual: featureResidual,
                                x: $0, batch: batch, keepPreResidual: false)
        }
        let d = outputWidth, t = taskCount
        var out = [Float](repeating: 0, count: batch * t * d)
        for k in 0..<t {
            let u = outputs[k][outputs[k].count - 1]
            for i in 0..<batch { for j in 0..<d { out[(i * t + k) * d + j] = Float(u[i * d + j]) } }
        }
        return out
    }

    /// Final outputs for one row: `[T × d]`.
    public func embed(_ x: [Float]) -> [Float] {
        x.withUnsafeBufferPointer { embedBatch($0, batch: 1) }
    }
}
