/// `model.json`: the description of a twin-tower multi-task model (SPEC §1 "Model directory").
///
/// The same `tasks` and `features` lists appear in `features.yaml` (SPEC §3), so one type serves
/// both: `FeatureSpec` and `TaskSpec` are decoded from either file.
public struct ModelSpec: Codable, Sendable, Equatable {
    public static let formatTag = "prerank-model/1"

    public var format: String
    public var version: String
    public var tasks: [TaskSpec]
    public var architecture: Architecture
    public var features: [FeatureSpec]
    /// Free-form training provenance (data, seed, arch, metrics); kept as raw JSON.
    public var training: JSONValue?

    public init(format: String = ModelSpec.formatTag, version: String, tasks: [TaskSpec],
                architecture: Architecture, features: [FeatureSpec], training: JSONValue? = nil) {
        self.format = format
        self.version = version
        self.tasks = tasks
        self.architecture = architecture
        self.features = features
        self.training = training
    }

    /// Fields of one side, in feature-spec order (the order of the tower input blocks).
    public func fields(of side: Side) -> [FeatureSpec] { features.filter { $0.side == side } }
}

/// A task of the chain, densest first (`ctr → atcr → ctcvr`).
public struct TaskSpec: Codable, Sendable, Equatable {
    public var name: String
    /// The CSV label column this task is trained on (`click`, `cart`, `order`).
    public var label: String
    public init(name: String, label: String) { self.name = name; self.label = label }
}

/// How task outputs are chained.
public enum ChainKind: String, Codable, Sendable, Equatable {
    /// ResFlow / NSE: `logit_k = [LR and k>0]·logit_{k-1} + r_k`, `p_k = σ(logit_k)`.
    case additive
    /// ESMM: `p_k = p_{k-1} · σ(r_k)`.
    case multiplicative
}

public struct Architecture: Codable, Sendable, Equatable {
    /// Widths of the hidden blocks `l = 0..L-2`; may be empty (each tower is one linear block).
    public var hidden: [Int]
    /// Width of the final linear block (the dot-product space).
    public var d: Int
    /// Feature residual: `o_k^l += o_{k-1}^l` on hidden blocks for k > 0.
    public var fr: Bool
    /// Logit residual after the dot product: `logit_k = logit_{k-1} + r_k`.
    public var lr: Bool
    /// `r_k = min(r_k, 0)` for k > 0, so probabilities never increase along the chain.
    public var clamp: Bool
    public var chain: ChainKind

    public init(hidden: [Int], d: Int, fr: Bool, lr: Bool, clamp: Bool, chain: ChainKind) {
        self.hidden = hidden
        self.d = d
        self.fr = fr
        self.lr = lr
        self.clamp = clamp
        self.chain = chain
    }

    /// The named variants of SPEC §4 `train --arch`.
    public static func named(_ name: String, hidden: [Int], d: Int, clamp: Bool) -> Architecture? {
        switch name.lowercased() {
        case "resflow": return .init(hidden: hidden, d: d, fr: true, lr: true, clamp: clamp, chain: .additive)
        case "nse": return .init(hidden: hidden, d: d, fr: false, lr: false, clamp: clamp, chain: .additive)
        case "nse+fr": return .init(hidden: hidden, d: d, fr: true, lr: false, clamp: clamp, chain: .additive)
        case "nse+lr": return .init(hidden: hidden, d: d, fr: false, lr: true, clamp: clamp, chain: .additive)
        case "esmm": return .init(hidden: hidden, d: d, fr: false, lr: false, clamp: clamp, chain: .multiplicative)
        default: return nil
        }
    }
}

public enum Side: String, Codable, Sendable, Equatable, CaseIterable {
    case user
    case item
}

public enum FeatureKind: String, Codable, Sendable, Equatable {
    case categorical
    case multi
    case dense
}

public struct FeatureSpec: Codable, Sendable, Equatable {
    public var name: String
    public var side: Side
    public var kind: FeatureKind
    /// Hash buckets (rows of `emb.<name>`); categorical and multi only.
    public var buckets: Int?
    /// Embedding width; categorical and multi only.
    public var dim: Int?

    public init(name: String, side: Side, kind: FeatureKind, buckets: Int? = nil, dim: Int? = nil) {
        self.name = name
        self.side = side
        self.kind = kind
        self.buckets = buckets
        self.dim = dim
    }

    /// Width of this field's block in the tower input.
    public var inputWidth: Int { kind == .dense ? 1 : (dim ?? 0) }
}
