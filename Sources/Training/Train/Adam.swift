import Foundation

/// Adam (Kingma & Ba) over one flat parameter array.
struct AdamState {
    var m: [Float]
    var v: [Float]
    init(count: Int) {
        m = [Float](repeating: 0, count: count)
        v = [Float](repeating: 0, count: count)
    }

    /// Dense step: every parameter.
    mutating func step(_ params: inout [Float], grad: [Float], lr: Float, t: Int, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8) {
        let c1 = 1 - powf(beta1, Float(t)), c2 = 1 - powf(beta2, Float(t))
        let a = lr * sqrtf(c2) / c1
        for i in params.indices {
            let g = grad[i]
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            params[i] -= a * m[i] / (sqrtf(v[i]) + eps)
        }
    }

    /// Lazy (sparse) step on the rows a batch touched, with L2 on those rows only: id tables
    /// memorise fast (notes/training.md), and decaying untouched rows would cost a full pass.
    ///
    /// `grads` is `[rows.count × dim]`: the gradient of row `rows[r]` at `r · dim`.
    mutating func stepRows(_ params: inout [Float], rows: [Int32], grads: [Float], dim: Int, lr: Float, l2: Float, t: Int,
                           beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8) {
        let c1 = 1 - powf(beta1, Float(t)), c2 = 1 - powf(beta2, Float(t))
        let a = lr * sqrtf(c2) / c1
        for (r, row) in rows.enumerated() {
            let base = Int(row) * dim
            for j in 0..<dim {
                let i = base + j
                let gi = grads[r * dim + j] + l2 * params[i]
                m[i] = beta1 * m[i] + (1 - beta1) * gi
                v[i] = beta2 * v[i] + (1 - beta2) * gi * gi
                params[i] -= a * m[i] / (sqrtf(v[i]) + eps)
            }
        }
    }
}
