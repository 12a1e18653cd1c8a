import Foundation
import Fusion

/// A fusion given on the command line that cannot be used (one line).
public struct FusionTextError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Parsing and printing fusion weights on the command line.
public enum FusionText {
    /// `additive:1,20,0.1` (α, β, γ; γ optional) or `multiplicative:0.8,1` (α, β).
    public static func parse(_ text: String) throws(FusionTextError) -> FusionPolicy {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, let formula = FusionFormula(rawValue: parts[0].trimmingCharacters(in: .whitespaces).lowercased()) else {
            throw FusionTextError("--fusion: expected additive:α,β[,γ] or multiplicative:α,β, got \"\(text)\"")
        }
        let numbers = parts[1].split(separator: ",", omittingEmptySubsequences: false).map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard (2...3).contains(numbers.count), numbers.allSatisfy({ $0 != nil }) else {
            throw FusionTextError("--fusion: expected 2 or 3 comma-separated numbers after \(formula.rawValue):, got \"\(parts[1])\"")
        }
        let policy = FusionPolicy(formula: formula, alpha: numbers[0]!, beta: numbers[1]!, gamma: numbers.count == 3 ? numbers[2]! : 0)
        do { return try policy.validated() } catch { throw FusionTextError("--fusion: \(error.description)") }
    }

    public static func describe(_ f: FusionPolicy) -> String {
        switch f.formula {
        case .additive:
            return "additive: \(JSONText.plain(f.alpha))·CTR + \(JSONText.plain(f.beta))·CTCVR + \(JSONText.plain(f.gamma))·relevance"
        case .multiplicative:
            return "multiplicative: CTR^\(JSONText.plain(f.alpha)) · CTCVR^\(JSONText.plain(f.beta))"
        }
    }

    /// The `fusion:` block of config/prerank.yaml (SPEC §5) for these weights.
    public static func configYAML(_ f: FusionPolicy) -> String {
        "fusion:\n  formula: \(f.formula.rawValue)\n  alpha: \(JSONText.plain(f.alpha))\n  beta: \(JSONText.plain(f.beta))\n  gamma: \(JSONText.plain(f.gamma))"
    }
}
