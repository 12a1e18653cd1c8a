#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns the per-task dot products into probabilities along the task chain (SPEC §1):
///
///     r_k = <u_k, v_k> + c_k,       if clamp and k > 0: r_k = min(r_k, 0)
///     additive:       logit_k = [LR and k>0]·logit_{k-1} + r_k,  p_k = σ(logit_k)
///     multiplicative: p_k = [k>0 ? p_{k-1} : 1] · σ(r_k)
///
/// Shared by training (forward), `score` and the server's scoring kernel.
public struct LogitChain: Sendable, Equatable {
    public let chain: ChainKind
    public let logitResidual: Bool
    public let clamp: Bool
    /// `c_k`, one per task.
    public let headBias: [Float]

    public init(architecture: Architecture, headBias: [Float]) {
        self.chain = architecture.chain
        self.logitResidual = architecture.lr
        self.clamp = architecture.clamp
        self.headBias = headBias
    }

    public var taskCount: Int { headBias.count }

    @inlinable
    public static func sigmoid(_ x: Float) -> Float {
        if x >= 0 { return 1 / (1 + expf(-x)) }
        let e = expf(x)
        return e / (1 + e)
    }

    /// Probabilities for one candidate.
    ///
    /// - parameters:
    ///   - dots: `T` inner products `<u_k, v_k>` (without `c_k`).
    ///   - probabilities: `T` outputs.
    ///   - logits: optional `T` outputs of the chained logits (additive) or residual logits
    ///     (multiplicative), for training's backward pass.
    @inlinable
    public func apply(dots: UnsafePointer<Float>, probabilities: UnsafeMutablePointer<Float>,
                      logits: UnsafeMutablePointer<Float>? = nil) {
        var previousLogit: Float = 0
        var previousP: Float = 1
        for k in 0..<headBias.count {
            var r = dots[k] + headBias[k]
            if clamp && k > 0 && r > 0 { r = 0 }
            switch chain {
            case .additive:
                let logit = (logitResidual && k > 0) ? previousLogit + r : r
                previousLogit = logit
                probabilities[k] = Self.sigmoid(logit)
                logits?[k] = logit
            case .multiplicative:
                previousP = previousP * Self.sigmoid(r)
                probabilities[k] = previousP
                logits?[k] = r
            }
        }
    }

    /// Convenience for tests and small callers.
    public func probabilities(dots: [Float]) -> [Float] {
        var p = [Float](repeating: 0, count: taskCount)
        dots.withUnsafeBufferPointer { d in p.withUnsafeMutableBufferPointer { apply(dots: d.baseAddress!, probabilities: $0.baseAddress!) } }
        return p
    }
}
