import Foundation
@testable import PreRankServer
import Testing
import TwinTower

@Suite struct CodecResponseEncoderTests {
    /// The response as JSONDecoder reads it back.
    struct Mirror: Decodable {
        struct Item: Decodable {
            var id: Int64
            var score: Double?
            var ctr: Float?
            var ctcvr: Float?
            var tasks: [String: Float]?
        }
        var request_id: String?
        var model_version: String
        var partial: Bool
        var took_ms: Double
        var items: [Item]
        var unknown_ids: [Int64]
        var arm: String?
    }

    @Test func specExampleText() {
        let r = PreRankResponse(requestID: "r-1", modelVersion: "demo-20261123", partial: false, tookMs: 2.31,
                                items: [ScoredItem(id: 1003, score: 0.0871, ctr: 0.061, ctcvr: 0.0013)], unknownIDs: [1002])
        #expect(String(decoding: ResponseEncoder.encode(r), as: UTF8.self) ==
                #"{"request_id":"r-1","model_version":"demo-20261123","partial":false,"took_ms":2.31,"items":[{"id":1003,"score":0.0871,"ctr":0.061,"ctcvr":0.0013}],"unknown_ids":[1002]}"#)
        let empty = PreRankResponse(requestID: nil, modelVersion: "v", partial: true, tookMs: 0, items: [], unknownIDs: [], arm: "canary")
        #expect(String(decoding: ResponseEncoder.encode(empty), as: UTF8.self) ==
                #"{"request_id":null,"model_version":"v","partial":true,"took_ms":0.0,"items":[],"unknown_ids":[],"arm":"canary"}"#)
    }

    @Test func debugTasksAndNonFinite() throws {
        let item = ScoredItem(id: -5, score: .infinity, ctr: .nan, ctcvr: 1e-7,
                              tasks: [("ctr", 0.5), ("atcr", 0.25), ("ctcvr", 1e-7)])
        let r = PreRankResponse(requestID: "q\"\\\n\u{1}é😀", modelVersion: "m", partial: false, tookMs: -.nan, items: [item], unknownIDs: [])
        let bytes = ResponseEncoder.encode(r)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.contains(#""score":null,"ctr":null,"ctcvr":1e-07,"tasks":{"ctr":0.5,"atcr":0.25,"ctcvr":1e-07}"#))
        #expect(text.contains(#""took_ms":null"#))
        // Parses as JSON; the string survives its escapes.
        let object = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]
        #expect(object?["request_id"] as? String == "q\"\\\n\u{1}é😀")
    }

    /// Random responses: JSONSerialization parses the bytes and JSONDecoder reads back exactly
    /// the values that went in.
    @Test func roundTripsThroughJSONDecoder() throws {
        var rng = SplitMix64(seed: 31)
        var gen = BodyGenerator(seed: 32)
        for _ in 0..<300 {
            let debug = gen.chance(0.3)
            let items = (0..<gen.int(0...50)).map { _ in
                let p = (0..<3).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()) & 0x3F7F_FFFF) }
                let score = gen.chance(0.5) ? Double.random(in: -1...30, using: &rng) : Double(bitPattern: rng.next() & 0x7FEF_FFFF_FFFF_FFFF)
                return ScoredItem(id: gen.integer(), score: score, ctr: p[0], ctcvr: p[2],
                                  tasks: debug ? [("ctr", p[0]), ("atcr", p[1]), ("ctcvr", p[2])] : nil)
            }
            let r = PreRankResponse(requestID: gen.chance(0.9) ? gen.string().value : nil, modelVersion: gen.string().value,
                                    partial: gen.chance(0.5), tookMs: Double.random(in: 0...200, using: &rng), items: items,
                                    unknownIDs: (0..<gen.int(0...5)).map { _ in gen.integer() }, arm: gen.chance(0.2) ? "canary" : nil)
            let data = Data(ResponseEncoder.encode(r))
            #expect((try? JSONSerialization.jsonObject(with: data)) is [String: Any])
            let m = try JSONDecoder().decode(Mirror.self, from: data)
            #expect(m.request_id == r.requestID && m.model_version == r.modelVersion && m.partial == r.partial)
            #expect(m.took_ms == r.tookMs && m.unknown_ids == r.unknownIDs && m.arm == r.arm)
            #expect(m.items.count == r.items.count)
            for (a, b) in zip(m.items, r.items) {
                #expect(a.id == b.id && a.score == b.score && a.ctr == b.ctr && a.ctcvr == b.ctcvr)
                if let tasks = b.tasks {
                    #expect(a.tasks == Dictionary(uniqueKeysWithValues: tasks.map { ($0.name, $0.p) }))
                } else {
                    #expect(a.tasks == nil)
                }
            }
            // Keys in the SPEC's order.
            let text = String(decoding: data, as: UTF8.self)
            let order = ["\"request_id\":", "\"model_version\":", "\"partial\":", "\"took_ms\":", "\"items\":", "\"unknown_ids\":"]
                .compactMap { text.range(of: $0)?.lowerBound }
            #expect(order.count == 6 && order == order.sorted())
        }
    }

    @Test func fromEngineItem() {
        let ranked = RankedItem(id: 7, score: 0.5, probabilities: [0.1, 0.05, 0.01])
        #expect(ScoredItem(ranked) == ScoredItem(id: 7, score: 0.5, ctr: 0.1, ctcvr: 0.01))
        #expect(ScoredItem(ranked, taskNames: ["ctr", "atcr", "ctcvr"]) ==
                ScoredItem(id: 7, score: 0.5, ctr: 0.1, ctcvr: 0.01, tasks: [("ctr", 0.1), ("atcr", 0.05), ("ctcvr", 0.01)]))
    }
}
