import Foundation
import CBLAS
import TwinTower

/// Gradients of one tower's parameters, same layout as `Tower.layers` (`[out × in]` row-major).
struct TowerGradients {
    var weight: [[[Float]]]
    var bias: [[[Float]]]

    init(zerosLike tower: Tower) {
        weight = tower.layers.map { $0.map { [Float](repeating: 0, count: $0.weight.count) } }
        bias = tower.layers.map { $0.map { [Float](repeating: 0, count: $0.bias.count) } }
    }
}

/// The backward pass of `Tower.forward` (the forward pass itself is not repeated here).
///
/// Shapes: `x` `[B × in]`; `acts.outputs[k][l]` `[B × w_l]`; `gradFinal[k]` `[B × d]` = dL/du_k.
/// Tasks are walked from last to first because, with the feature residual, `o_k^l` also feeds
/// `o_{k+1}^l`: its gradient is complete only once task k+1 is done. Returns dL/dx `[B × in]`.
enum TowerBackward {
    static func run(tower: Tower, x: [Float], batch: Int, acts: Tower.Activations, gradFinal: [[Float]],
                    into grads: inout TowerGradients) -> [Float] {
        let tasks = tower.taskCount, blocks = tower.blockCount
        var gx = [Float](repeating: 0, count: batch * tower.inputWidth)
        // gO[k][l]: dL/do_k^l for hidden blocks, filled as we go.
        var gO = [[[Float]]](repeating: [], count: tasks)
        for k in 0..<tasks {
            gO[k] = (0..<max(blocks - 1, 0)).map { [Float](repeating: 0, count: batch * tower.layers[k][$0].outDim) }
        }
        for k in stride(from: tasks - 1, through: 0, by: -1) {
            for l in stride(from: blocks - 1, through: 0, by: -1) {
                let layer = tower.layers[k][l]
                var gz: [Float]
                if l == blocks - 1 {
                    gz = gradFinal[k]
                } else {
                    // Work on a local copy: element writes through gO[k][l][i] would pay a
                    // uniqueness check per element (it was 5 % of training time).
                    gz = gO[k][l]
                    gO[k][l] = []
                    if tower.featureResidual && k + 1 < tasks {
                        gz.withUnsafeMutableBufferPointer { g in
                            gO[k + 1][l].withUnsafeBufferPointer { next in
                                for i in 0..<g.count { g[i] += next[i] }
                            }
                        }
                    }
                    gO[k][l] = gz  // the total dL/do_k^l, which task k-1 reads
                    gz.withUnsafeMutableBufferPointer { g in
                        acts.relu[k][l].withUnsafeBufferPointer { relu in
                            // A mask, not a branch (see Tower.forwardBlocks): the same +0 where
                            // relu <= 0, stored unconditionally so the loop vectorises.
                            for i in 0..<g.count {
                                let keep: UInt32 = relu[i] > 0 ? ~0 : 0
                                g[i] = Float(bitPattern: g[i].bitPattern & keep)
                            }
                        }
                    }
                }
                let input: [Float] = l == 0 ? x : acts.outputs[k][l - 1]
                // dW += gzᵀ · input  ([out × B] · [B × in])
                gz.withUnsafeBufferPointer { g in
                    input.withUnsafeBufferPointer { inp in
                        grads.weight[k][l].withUnsafeMutableBufferPointer { dw in
                            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(layer.outDim), Int32(layer.inDim), Int32(batch),
                                        1, g.baseAddress, Int32(layer.outDim), inp.baseAddress, Int32(layer.inDim), 1,
                                        dw.baseAddress, Int32(layer.inDim))
                        }
                    }
                }
                var db = grads.bias[k][l]
                grads.bias[k][l] = []
                db.withUnsafeMutableBufferPointer { d in
                    gz.withUnsafeBufferPointer { g in
                        Self.addColumnSums(g.baseAddress!, rows: batch, columns: layer.outDim, into: d.baseAddress!)
                    }
                }
                grads.bias[k][l] = db
                guard layer.inDim > 0 else { continue }
                // d input = gz · W  ([B × out] · [out × in])
                var gin = [Float](repeating: 0, count: batch * layer.inDim)
                gz.withUnsafeBufferPointer { g in
                    layer.weight.withUnsafeBufferPointer { w in
                        gin.withUnsafeMutableBufferPointer { o in
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(batch), Int32(layer.inDim), Int32(layer.outDim),
                                        1, g.baseAddress, Int32(layer.outDim), w.baseAddress, Int32(layer.inDim), 0,
                                        o.baseAddress, Int32(layer.inDim))
                        }
                    }
                }
                if l == 0 {
                    gx.withUnsafeMutableBufferPointer { g in gin.withUnsafeBufferPointer { for i in 0..<g.count { g[i] += $0[i] } } }
                } else {
                    var target = gO[k][l - 1]
                    gO[k][l - 1] = []
                    target.withUnsafeMutableBufferPointer { g in gin.withUnsafeBufferPointer { for i in 0..<g.count { g[i] += $0[i] } } }
                    gO[k][l - 1] = target
                }
            }
        }
        return gx
    }
}

extension TowerBackward {
    /// `d[j] += Σ_i g[i · columns + j]` for `g` `[rows × columns]` row-major (the bias gradient).
    ///
    /// Scalar reference: `for i in 0..<rows { for j in 0..<columns { d[j] += g[i * columns + j] } }`
    /// — LLVM cannot prove `d` and `g` apart, so it stores `d[j]` on every addition (half of
    /// `TowerBackward.run`'s samples in `perf`). Here eight columns accumulate in a register
    /// over all rows, then store once: every `d[j]` sums the same terms in the same order, so the
    /// result is the reference's bit for bit.
    @inline(__always)
    static func addColumnSums(_ g: UnsafePointer<Float>, rows: Int, columns: Int, into d: UnsafeMutablePointer<Float>) {
        var j = 0
        while j + 8 <= columns {
            var acc = UnsafeRawPointer(d + j).loadUnaligned(as: SIMD8<Float>.self)
            for i in 0..<rows { acc += UnsafeRawPointer(g + i * columns + j).loadUnaligned(as: SIMD8<Float>.self) }
            UnsafeMutableRawPointer(d + j).storeBytes(of: acc, as: SIMD8<Float>.self)
            j += 8
        }
        while j < columns {
            var s = d[j]
            for i in 0..<rows { s += g[i * columns + j] }
            d[j] = s
            j += 1
        }
    }
}

/// Loss and dL/dr_k of the task chain for one example (weighted BCE per task).
///
/// - additive: `logit_k = [LR,k>0] logit_{k-1} + r'_k`, `r'_k = min(r_k, 0)` when clamped (k>0);
///   dL/dlogit_k = w_k (p_k − y_k) plus, through the residual, dL/dlogit_{k+1}.
/// - multiplicative: `p_k = Π_{j≤k} σ(r_j)`; dL/dr_j = (1 − σ(r_j)) Σ_{k≥j} w_k (p_k − y_k) / (1 − p_k).
enum ChainLoss {
    static func gradient(chain: LogitChain, dots: [Float], labels: [Float], posWeight: [Float],
                         grad: inout [Float]) -> Float {
        let t = dots.count
        var p = [Float](repeating: 0, count: t)
        var logits = [Float](repeating: 0, count: t)
        dots.withUnsafeBufferPointer { d in
            p.withUnsafeMutableBufferPointer { pp in
                logits.withUnsafeMutableBufferPointer { chain.apply(dots: d.baseAddress!, probabilities: pp.baseAddress!, logits: $0.baseAddress) }
            }
        }
        var loss: Float = 0
        var w = [Float](repeating: 1, count: t)
        for k in 0..<t {
            w[k] = labels[k] > 0.5 ? posWeight[k] : 1
            let pk = min(max(p[k], 1e-7), 1 - 1e-7)
            loss -= w[k] * (labels[k] * logf(pk) + (1 - labels[k]) * logf(1 - pk))
        }
        switch chain.chain {
        case .additive:
            var carry: Float = 0
            for k in stride(from: t - 1, through: 0, by: -1) {
                let g = w[k] * (p[k] - labels[k]) + carry
                let r = dots[k] + chain.headBias[k]
                grad[k] = (chain.clamp && k > 0 && r > 0) ? 0 : g
                carry = chain.logitResidual ? g : 0
            }
        case .multiplicative:
            var suffix: Float = 0
            for k in stride(from: t - 1, through: 0, by: -1) {
                suffix += w[k] * (p[k] - labels[k]) / max(1 - p[k], 1e-7)
                let r = dots[k] + chain.headBias[k]
                let clamped = chain.clamp && k > 0 && r > 0
                let s = LogitChain.sigmoid(clamped ? 0 : r)
                grad[k] = clamped ? 0 : (1 - s) * suffix
            }
        }
        return loss
    }
}
