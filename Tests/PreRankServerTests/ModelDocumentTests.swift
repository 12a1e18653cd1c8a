import Foundation
import Testing
import TwinTower
@testable import PreRankServer

/// `GET /v1/model` keeps its bytes across the move to a typed document (issue #26): key order,
/// numbers as Swift spells them, `null` for unset optionals, a canary only when configured.
@Suite struct ModelDocumentTests {
    struct Pair: JSONObjectWritable {
        var a: Int
        var b: Double?
        func write(to w: inout JSONObjectWriter) {
            w.number("a", a)
            w.number("b", b)
        }
    }

    @Test func writerKeepsOrderAndSpelling() {
        var w = JSONObjectWriter()
        w.string("s", "q\"x")
        w.string("n", nil as String?)
        w.number("d", 150.0)
        w.number("t", true)
        w.strings("l", ["x", "y"])
        w.numbers("h", [1, 2])
        w.object("o", Pair(a: 1, b: nil))
        w.object("none", nil as Pair?)
        #expect(w.json == #"{"s":"q\"x","n":null,"d":150.0,"t":true,"l":["x","y"],"h":[1,2],"o":{"a":1,"b":null},"none":null}"#)
        #expect(JSONObjectWriter().json == "{}")
    }

    @Test func documentOrderAndCanary() throws {
        let w = try ServingCacheTests.World()
        defer { w.remove() }
        let path = w.dir + "/c.yaml"
        for canary in [false, true] {
            let extra = canary ? "canary: {share: 0.1, fusion: {beta: 3}, model: {dir: \(w.modelDir), index: \(w.indexPath)}}\n" : ""
            try "model: {dir: \(w.modelDir), index: \(w.indexPath)}\n\(extra)".write(toFile: path, atomically: true, encoding: .utf8)
            let snap = try ServingSnapshot.load(config: try ConfigLoader.load(path: path), parallelism: 1, cache: ServingCache())
            let json = ModelDocument(snap).json
            let top = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
            #expect(json.hasPrefix(#"{"model":{"version":"v1","fingerprint":"#))
            let keys = [#","fusion":{"formula":"#, #","topk":{"default":"#, #","budget_ms":150.0"#, #","updates":null"#,
                        #","loaded_at":""#, #","kernel":""#]
            let offsets = keys.map { json.range(of: $0)?.lowerBound }
            #expect(offsets.allSatisfy { $0 != nil }, "\(json)")
            #expect(offsets.compactMap { $0 } == offsets.compactMap { $0 }.sorted())
            #expect((top["canary"] != nil) == canary)
            if canary {
                let fusion = try #require((top["canary"] as? [String: Any])?["fusion"] as? [String: Any])
                #expect(fusion["allow_request_override"] == nil && fusion["beta"] as? Double == 3)
                #expect(json.contains(#","budget_ms":150.0,"canary":{"share":0.1,"key":"request_id","model":{"#))
            }
        }
    }
}
