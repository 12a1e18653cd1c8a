import Catalog
import Foundation
import TwinTower

/// The request bodies a load test cycles through: JSON lines from a file (one body per line), or
/// bodies generated for a model and index (random user features per the model's spec, random
/// candidate ids drawn from the index).
public struct RequestSource: Sendable {
    public let bodies: [[UInt8]]

    public init(bodies: [[UInt8]]) { self.bodies = bodies }

    /// One body per non-empty line of `path`.
    public static func jsonLines(path: String) throws(LoadTestError) -> RequestSource {
        guard let data = FileManager.default.contents(atPath: path) else { throw LoadTestError("cannot read \(path)") }
        let bodies = data.split(separator: UInt8(ascii: "\n"))
            .map { line -> [UInt8] in Array(line.last == UInt8(ascii: "\r") ? line.dropLast() : line) }
            .filter { !$0.allSatisfy { $0 == 32 || $0 == 9 } }
        guard !bodies.isEmpty else { throw LoadTestError("\(path) holds no request bodies (JSON lines, one per line)") }
        return RequestSource(bodies: bodies)
    }

    /// `count` bodies for the model in `modelDirectory` and the index at `indexPath`.
    ///
    /// - parameters:
    ///   - candidates: ids per request, drawn at random (without repetition) from the index.
    ///   - k: the `k` of each request, or nil to leave it to the server.
    public static func generated(modelDirectory: String, indexPath: String, candidates: Int, count: Int, k: Int?,
                                 seed: UInt64) throws(LoadTestError) -> RequestSource {
        let spec: ModelSpec
        let index: ItemIndex
        do {
            spec = try ModelStore.loadSpec(path: (modelDirectory as NSString).appendingPathComponent(ModelStore.specFile))
            index = try ItemIndex(path: indexPath)
        } catch {
            throw LoadTestError(error.description)
        }
        var rng = SplitMix64(seed: seed)
        let fields = spec.fields(of: .user)
        let ids = index.ids
        var bodies: [[UInt8]] = []
        bodies.reserveCapacity(count)
        for r in 0..<max(1, count) {
            bodies.append(Array(body(fields: fields, ids: ids, candidates: candidates, k: k, requestID: "lt-\(r)", using: &rng).utf8))
        }
        return RequestSource(bodies: bodies)
    }

    /// One generated body: categorical values are random strings, multi values 1–4 of them,
    /// dense values random numbers; candidates random distinct ids of the index.
    static func body(fields: [FeatureSpec], ids: UnsafeBufferPointer<Int64>, candidates: Int, k: Int?, requestID: String,
                     using rng: inout SplitMix64) -> String {
        var user: [String] = []
        for f in fields {
            let name = jsonQuote(f.name)
            switch f.kind {
            case .categorical:
                user.append("\(name):\"v\(rng.next() % 1_000_000)\"")
            case .multi:
                let n = Int(rng.next() % 4) + 1
                user.append("\(name):[" + (0..<n).map { _ in "\"t\(rng.next() % 50_000)\"" }.joined(separator: ",") + "]")
            case .dense:
                user.append("\(name):\(Double(rng.next() % 10_000) / 100)")
            }
        }
        var s = "{\"request_id\":\"\(requestID)\",\"user\":{\(user.joined(separator: ","))},\"query\":{},\"candidates\":["
        let n = min(candidates, ids.count)
        var picked = Set<Int>(minimumCapacity: n)
        var first = true
        while picked.count < n {
            let row = Int(rng.next() % UInt64(ids.count))
            guard picked.insert(row).inserted else { continue }
            if !first { s += "," }
            s += String(ids[row])
            first = false
        }
        s += "]"
        if let k { s += ",\"k\":\(k)" }
        s += "}"
        return s
    }
}

/// A JSON string literal for `s` (quotes, backslashes and control characters escaped).
func jsonQuote(_ s: String) -> String { JSONString.quote(s) }
