import Dispatch
import Foundation
import PreRankServer
import Testing
import TwinTower

/// Prints (does not assert) decode and encode times against Foundation on the body of
/// notes/swift-on-linux.md §4: request_id, user_id, 30 floats, 10,000 Int64 ids. Meaningful in
/// release: `swift test -c release --filter CodecBenchmark`. Serialized so the two timings do not
/// share the cores with each other.
@Suite(.serialized) struct CodecBenchmarkTests {
    static func body(candidates: Int) -> [UInt8] {
        var rng = SplitMix64(seed: 1)
        var s = "{\"request_id\":\"r-12345\",\"user\":{\"user_id\":\"u42\""
        for i in 0..<30 { s += ",\"f\(i)\":\(Float.random(in: -3...3, using: &rng))" }
        s += "},\"query\":{\"query_terms\":[\"red\",\"shoes\"]},\"k\":100,\"candidates\":["
        s += (0..<candidates).map { _ in String(Int64.random(in: 1_000_000_000...9_999_999_999, using: &rng)) }.joined(separator: ",")
        return Array((s + "]}").utf8)
    }

    static func p50(_ iterations: Int, _ work: () -> Void) -> Double {
        for _ in 0..<10 { work() }
        var times: [Double] = []
        for _ in 0..<iterations {
            let t0 = DispatchTime.now().uptimeNanoseconds
            work()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        return times.sorted()[iterations / 2]
    }

    @Test func decodeTimeVersusJSONDecoder() throws {
        let bytes = Self.body(candidates: 10_000)
        let data = Data(bytes)
        let ours = try RequestDecoder.decode(bytes)
        #expect(ours == (try JSONDecoder().decode(MirrorRequest.self, from: data).request))
        let decoder = JSONDecoder()
        let fast = Self.p50(200) {
            bytes.withUnsafeBytes { raw in _ = try? RequestDecoder.decode(raw) }
        }
        let foundation = Self.p50(50) { _ = try? decoder.decode(MirrorRequest.self, from: data) }
        print("CodecBenchmark decode, \(bytes.count) bytes, 10k candidates: RequestDecoder p50 \(fast) ms, JSONDecoder p50 \(foundation) ms")
    }

    /// The encoder's bytes are JSON that Foundation reads back to the same response (ids, scores,
    /// probabilities, unknown ids), and its time is printed beside Foundation writing the same
    /// object (`JSONSerialization`), like the decode figure. Times are printed, not asserted.
    @Test func encodeMatchesFoundationAndTimesIt() throws {
        var rng = SplitMix64(seed: 2)
        let items = (0..<10_000).map { i in
            ScoredItem(id: Int64(i) * 7919, score: Double.random(in: 0...1, using: &rng),
                       ctr: Float.random(in: 0...1, using: &rng), ctcvr: Float.random(in: 0...0.01, using: &rng))
        }
        let response = PreRankResponse(requestID: "r-1", modelVersion: "demo-20261123", partial: false, tookMs: 2.31,
                                       items: items, unknownIDs: [1002, 1003])
        let bytes = ResponseEncoder.encode(response)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        #expect(object["request_id"] as? String == "r-1" && object["model_version"] as? String == "demo-20261123")
        #expect((object["unknown_ids"] as? [Int]) == [1002, 1003])
        let decoded = try #require(object["items"] as? [[String: Any]])
        #expect(decoded.count == items.count)
        #expect(decoded.map { ($0["id"] as? NSNumber)?.int64Value } == items.map(\.id))
        // Scores exactly: the text is Double's shortest round-trip form, read back with Double(_:)
        // (Foundation's JSONSerialization on Linux may land an ulp away, so not with it).
        let text = String(decoding: bytes, as: UTF8.self)
        let scores = text.components(separatedBy: "\"score\":").dropFirst().map { Double($0.prefix { $0 != "," && $0 != "}" }) }
        #expect(scores == items.map { Optional($0.score) })
        let ours = Self.p50(100) { _ = ResponseEncoder.encode(response) }
        let foundation = Self.p50(20) { _ = try? JSONSerialization.data(withJSONObject: object) }
        print("CodecBenchmark encode, 10k items: ResponseEncoder p50 \(ours) ms (\(bytes.count) bytes), JSONSerialization p50 \(foundation) ms")
    }
}
