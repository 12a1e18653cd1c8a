#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Catalog
import Foundation
import PreRankServer
import TwinTower

/// The synthetic world of the benchmark and of the engine tests: a random ResFlow model
/// (T tasks, d) and its index in each dtype, written once under `directory` and reused.
///
/// Why a target of its own (TestWorlds): it is a fixture, not a benchmark; the unit tests and
/// `prerank bench` both build on it, and nothing the server runs depends on it.
public final class BenchWorld: @unchecked Sendable {
    public let model: Model
    public let bundles: [IndexDType: ServingBundle]
    /// F16/I8 indexes that also hold F32 rescore rows.
    public let rescoreBundles: [IndexDType: ServingBundle]
    public let settings: BenchSettings

    init(model: Model, bundles: [IndexDType: ServingBundle], rescoreBundles: [IndexDType: ServingBundle], settings: BenchSettings) {
        self.model = model
        self.bundles = bundles
        self.rescoreBundles = rescoreBundles
        self.settings = settings
    }

    public static func spec(tasks: Int, d: Int) -> ModelSpec {
        let names = ["ctr", "atcr", "ctcvr"]
        let labels = ["click", "cart", "order"]
        let taskSpecs = (0..<tasks).map { k in
            tasks == 3 ? TaskSpec(name: names[k], label: labels[k]) : TaskSpec(name: "task\(k)", label: "label\(k)")
        }
        return ModelSpec(version: "bench-\(tasks)x\(d)", tasks: taskSpecs,
                         architecture: Architecture(hidden: [128, 64], d: d, fr: true, lr: true, clamp: false, chain: .additive),
                         features: [
                            FeatureSpec(name: "user_id", side: .user, kind: .categorical, buckets: 100_003, dim: 16),
                            FeatureSpec(name: "query_terms", side: .user, kind: .multi, buckets: 50_021, dim: 16),
                            FeatureSpec(name: "age", side: .user, kind: .dense),
                            FeatureSpec(name: "item_id", side: .item, kind: .categorical, buckets: 1009, dim: 16),
                         ])
    }

    /// Loads the world from `directory`, writing what is missing first.
    public static func prepare(_ s: BenchSettings, log: (String) -> Void) throws(FormatError) -> BenchWorld {
        let dir = "\(s.directory)/n\(s.items)-t\(s.tasks)-d\(s.d)-s\(s.seed)"
        let modelDir = "\(dir)/model"
        var model: Model
        if let m = try? ModelStore.load(directory: modelDir) {
            model = m
        } else {
            log("writing the bench model to \(modelDir)")
            var rng = SplitMix64(seed: s.seed)
            model = try ModelStore.save(ModelStore.random(spec: spec(tasks: s.tasks, d: s.d), using: &rng), directory: modelDir)
        }
        var bundles: [IndexDType: ServingBundle] = [:]
        var rescoreBundles: [IndexDType: ServingBundle] = [:]
        var vectors: [Float]? = nil
        let wanted = s.dtypes.map { ($0, false) } + (s.scenarios.contains("request") ? s.dtypes.filter { $0 != .f32 }.map { ($0, true) } : [])
        for (dtype, rescore) in wanted {
            let path = "\(dir)/index-\(dtype.rawValue)\(rescore ? "-rescore" : "").safetensors"
            if let index = try? ItemIndex(path: path, model: model, populate: true, residency: s.residency), index.count == s.items {
                let bundle = try ServingBundle(model: model, index: index)
                if rescore { rescoreBundles[dtype] = bundle } else { bundles[dtype] = bundle }
                continue
            }
            if vectors == nil {
                log("generating \(s.items) × \(s.tasks) × \(s.d) item vectors")
                vectors = gaussianVectors(count: s.items * s.tasks * s.d, sigma: itemSigma, seed: s.seed &+ 99)
            }
            log("writing \(path)")
            _ = try IndexBuilder.write(ids: (0..<s.items).map { Int64($0) * 3 + 1000 }, vectors: vectors!,
                                       taskNames: model.taskNames, d: s.d, dtype: dtype, fingerprint: model.fingerprint,
                                       modelVersion: model.spec.version, output: path, rescore: rescore)
            let index = try ItemIndex(path: path, model: model, populate: true, residency: s.residency)
            let bundle = try ServingBundle(model: model, index: index)
            if rescore { rescoreBundles[dtype] = bundle } else { bundles[dtype] = bundle }
        }
        return BenchWorld(model: model, bundles: bundles, rescoreBundles: rescoreBundles, settings: s)
    }

    /// Item components are N(0, σ²) with this σ.
    static let itemSigma: Float = 0.35

    static func gaussianVectors(count: Int, sigma: Float, seed: UInt64) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        var rng = SplitMix64(seed: seed)
        out.withUnsafeMutableBufferPointer { o in
            var i = 0
            while i < count {
                let u1 = max(Double(rng.next() >> 11) / Double(1 << 53), 1e-300)
                let u2 = Double(rng.next() >> 11) / Double(1 << 53)
                let r = (-2 * log(u1)).squareRoot()
                o[i] = Float(r * cos(2 * .pi * u2)) * sigma
                if i + 1 < count { o[i + 1] = Float(r * sin(2 * .pi * u2)) * sigma }
                i += 2
            }
        }
        return out
    }

    /// A user tower output for a random request, rescaled so that each task's logit has
    /// standard deviation 1 over items (random weights give arbitrary scales; ranking quality
    /// figures such as recall need logits that spread the items).
    public func scaledUser(using rng: inout SplitMix64) -> [Float] {
        let request = randomRequest(using: &rng)
        var row = FeatureRow()
        for (name, v) in request.user { row.values[name] = v }
        for (name, v) in request.query { row.values[name] = v }
        var u = (try? model.userTower.embed(model.encoder(.user).encode(row))) ?? []
        if u.count != settings.tasks * settings.d {
            u = Self.gaussianVectors(count: settings.tasks * settings.d, sigma: 1, seed: rng.next())
        }
        let d = settings.d
        for k in 0..<settings.tasks {
            var norm: Float = 0
            for j in 0..<d { norm += u[k * d + j] * u[k * d + j] }
            let scale = norm > 0 ? 1 / (norm.squareRoot() * Self.itemSigma) : 0
            for j in 0..<d { u[k * d + j] *= scale }
        }
        return u
    }

    public func randomRequest(using rng: inout SplitMix64) -> PreRankRequest {
        let terms = (0..<Int(rng.next() % 4 + 1)).map { _ in FeatureValue.string("t\(rng.next() % 5000)") }
        return PreRankRequest(requestID: "bench-\(rng.next() % 1_000_000)",
                              user: ["user_id": .string("u\(rng.next() % 1_000_000)"),
                                     "age": .number(Double(rng.next() % 60 + 16))],
                              query: ["query_terms": .array(terms)],
                              k: settings.k)
    }
}
