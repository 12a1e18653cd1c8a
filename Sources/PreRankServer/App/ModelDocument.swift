import Foundation
import Fusion

/// The answer of `GET /v1/model`: what a snapshot serves (models, indexes, live catalog, fusion,
/// top-K, canary), as a typed document so a field cannot be forgotten or misspelt in one arm.
/// The key order is the wire format's (docs/openapi.yaml); the written order below is that order.
struct ModelDocument: JSONObjectWritable {
    var model: ArmModel
    var fusion: FusionWeights
    var topk: TopK
    var budgetMs: Double
    var canary: Canary?
    var updates: String?
    var loadedAt: Date
    var kernel: String

    init(_ snap: ServingSnapshot, kernel: String = BuildInfo.kernel) {
        // The configured depth; null means the default max(4·k, 256) of each request's k.
        let depth = snap.options.rescoreDepth
        model = ArmModel(snap.primary, rescoreDepth: depth)
        fusion = FusionWeights(snap.options.fusion, allowRequestOverride: snap.options.allowFusionOverride)
        topk = TopK(default: snap.options.defaultK, max: snap.options.maxK, rescoreDepth: depth)
        budgetMs = snap.config.budgetMs
        if let bundle = snap.canary, let c = snap.config.canary {
            canary = Canary(share: c.share, key: c.key.rawValue, model: ArmModel(bundle, rescoreDepth: depth),
                            fusion: FusionWeights(snap.canaryOptions.fusion, allowRequestOverride: nil))
        }
        updates = snap.config.model.updates
        loadedAt = snap.loadedAt
        self.kernel = kernel
    }

    func write(to w: inout JSONObjectWriter) {
        w.object("model", model)
        w.object("fusion", fusion)
        w.object("topk", topk)
        w.number("budget_ms", budgetMs)
        if let canary { w.object("canary", canary) }
        w.string("updates", updates)
        w.string("loaded_at", Self.iso8601(loadedAt))
        w.string("kernel", kernel)
    }

    /// UTC with milliseconds: two reloads within a second must show different `loaded_at`.
    static func iso8601(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }

    /// One arm's model and index.
    struct ArmModel: JSONObjectWritable {
        var version: String
        var fingerprint: String
        var tasks: [String]
        var architecture: Architecture
        var index: Index

        init(_ b: ServingBundle, rescoreDepth: Int?) {
            version = b.version
            fingerprint = b.model.fingerprint
            tasks = b.model.taskNames
            let a = b.model.spec.architecture
            architecture = Architecture(hidden: a.hidden, d: a.d, fr: a.fr, lr: a.lr, clamp: a.clamp, chain: a.chain.rawValue)
            index = Index(b, rescoreDepth: rescoreDepth)
        }

        func write(to w: inout JSONObjectWriter) {
            w.string("version", version)
            w.string("fingerprint", fingerprint)
            w.strings("tasks", tasks)
            w.object("architecture", architecture)
            w.object("index", index)
        }
    }

    struct Architecture: JSONObjectWritable {
        var hidden: [Int]
        var d: Int
        var fr: Bool
        var lr: Bool
        var clamp: Bool
        var chain: String

        func write(to w: inout JSONObjectWriter) {
            w.numbers("hidden", hidden)
            w.number("d", d)
            w.number("fr", fr)
            w.number("lr", lr)
            w.number("clamp", clamp)
            w.string("chain", chain)
        }
    }

    struct Index: JSONObjectWritable {
        var items: Int
        var dtype: String
        var d: Int
        var bytes: Int
        var rescore: Rescore?
        var residency: String
        var path: String
        var mappedAt: Date
        var catalog: Catalog

        init(_ b: ServingBundle, rescoreDepth: Int?) {
            items = b.index.count
            dtype = b.index.dtype.rawValue
            d = b.index.d
            bytes = b.index.vectorBytes
            rescore = b.index.rescore == nil ? nil : Rescore(bytes: b.index.rescoreBytes, depth: rescoreDepth)
            residency = b.index.residency.rawValue
            path = b.index.path
            mappedAt = b.indexMappedAt
            catalog = Catalog(baseItems: b.index.count, deltaItems: b.delta.upsertedCount, deletedIDs: b.delta.deletedIDs.count,
                              hiddenBaseItems: b.delta.hiddenCount, items: b.itemCount, sequence: b.delta.sequence,
                              baseSequence: ServingBundle.baseSequence(b.index))
        }

        func write(to w: inout JSONObjectWriter) {
            w.number("items", items)
            w.string("dtype", dtype)
            w.number("d", d)
            w.number("bytes", bytes)
            w.object("rescore", rescore)
            w.string("residency", residency)
            w.string("path", path)
            w.string("mapped_at", ModelDocument.iso8601(mappedAt))
            w.object("catalog", catalog)
        }
    }

    /// The F32 copy kept for rescoring a quantised scan.
    struct Rescore: JSONObjectWritable {
        var bytes: Int
        var depth: Int?

        func write(to w: inout JSONObjectWriter) {
            w.string("dtype", "f32")
            w.number("bytes", bytes)
            w.number("depth", depth)
        }
    }

    /// The live catalog over the base index.
    struct Catalog: JSONObjectWritable {
        var baseItems: Int
        var deltaItems: Int
        var deletedIDs: Int
        var hiddenBaseItems: Int
        var items: Int
        var sequence: UInt64
        var baseSequence: UInt64

        func write(to w: inout JSONObjectWriter) {
            w.number("base_items", baseItems)
            w.number("delta_items", deltaItems)
            w.number("deleted_ids", deletedIDs)
            w.number("hidden_base_items", hiddenBaseItems)
            w.number("items", items)
            w.number("sequence", sequence)
            w.number("base_sequence", baseSequence)
        }
    }

    struct FusionWeights: JSONObjectWritable {
        var formula: String
        var alpha: Double
        var beta: Double
        var gamma: Double
        /// Written for the primary arm only (the canary inherits the primary's setting).
        var allowRequestOverride: Bool?

        init(_ f: FusionPolicy, allowRequestOverride: Bool?) {
            formula = f.formula.rawValue
            alpha = f.alpha
            beta = f.beta
            gamma = f.gamma
            self.allowRequestOverride = allowRequestOverride
        }

        func write(to w: inout JSONObjectWriter) {
            w.string("formula", formula)
            w.number("alpha", alpha)
            w.number("beta", beta)
            w.number("gamma", gamma)
            if let allowRequestOverride { w.number("allow_request_override", allowRequestOverride) }
        }
    }

    struct TopK: JSONObjectWritable {
        var `default`: Int
        var max: Int
        var rescoreDepth: Int?

        func write(to w: inout JSONObjectWriter) {
            w.number("default", `default`)
            w.number("max", max)
            w.number("rescore_depth", rescoreDepth)
        }
    }

    struct Canary: JSONObjectWritable {
        var share: Double
        var key: String
        var model: ArmModel
        var fusion: FusionWeights

        func write(to w: inout JSONObjectWriter) {
            w.number("share", share)
            w.string("key", key)
            w.object("model", model)
            w.object("fusion", fusion)
        }
    }
}
