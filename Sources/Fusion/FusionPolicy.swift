#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How CTR and CTCVR (and a relevance level) are fused into one ranking score (SPEC §2, the
/// ResFlow paper §5.3).
public enum FusionFormula: String, Sendable, Equatable, CaseIterable, Codable {
    /// `α·CTR + β·CTCVR + γ·relevance`: the paper's best online.
    case additive
    /// `CTR^α · CTCVR^β` (γ must be 0): the historical baseline.
    case multiplicative
}

/// Why a set of fusion weights is refused; `field` is the weight's name.
public struct FusionError: Error, Sendable, Equatable, CustomStringConvertible {
    public var field: String
    public var message: String
    public var description: String { "\(field): \(message)" }
}

/// Fusion weights in force. Scores are computed in Double: with β = 20, `CTCVR^β` underflows
/// Float for CTCVR ≈ 1e-3 and every item would tie at 0.
public struct FusionPolicy: Sendable, Equatable {
    public var formula: FusionFormula
    public var alpha: Double
    public var beta: Double
    public var gamma: Double

    public init(formula: FusionFormula = .additive, alpha: Double = 1, beta: Double = 20, gamma: Double = 0) {
        self.formula = formula
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
    }

    /// Checks the weights; errors name the weight (`alpha`, `beta`, `gamma`).
    public func validated() throws(FusionError) -> FusionPolicy {
        for (name, v) in [("alpha", alpha), ("beta", beta), ("gamma", gamma)] where !v.isFinite {
            throw FusionError(field: name, message: "must be a finite number")
        }
        if formula == .multiplicative && gamma != 0 {
            throw FusionError(field: "gamma", message: "must be 0 with the multiplicative formula")
        }
        return self
    }

    /// The fused score of one item. `relevance` is 0 when the request gives none.
    @inlinable
    public func score(ctr: Float, ctcvr: Float, relevance: Float = 0) -> Double {
        switch formula {
        case .additive:
            return alpha * Double(ctr) + beta * Double(ctcvr) + gamma * Double(relevance)
        case .multiplicative:
            return pow(Double(ctr), alpha) * pow(Double(ctcvr), beta)
        }
    }
}
