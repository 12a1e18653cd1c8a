import Benchmarks
import Foundation
import PreRankServer
import Testing
import TwinTower

/// The codec agrees with Foundation on the bodies `prerank bench --scenarios codec` times (the
/// timings are the bench's; these are the assertions that were beside them): the decoder reads
/// the 10k-candidate body as `JSONDecoder` does, and Foundation reads the encoder's bytes back
/// to the same response.
@Suite struct CodecFoundationAgreementTests {
    @Test func decoderAgreesWithJSONDecoderOnTheBenchBody() throws {
        let bytes = CodecBenchmark.requestBody(candidates: 10_000)
        let ours = try RequestDecoder.decode(bytes)
        #expect(ours == (try JSONDecoder().decode(MirrorRequest.self, from: Data(bytes)).request))
    }

    @Test func encoderBytesReadBackThroughFoundation() throws {
        let response = CodecBenchmark.response(items: 10_000)
        let items = response.items
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
    }
}
