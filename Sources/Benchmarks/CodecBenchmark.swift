import Foundation
import PreRankServer
import TwinTower

/// `prerank bench --scenarios codec`: the hand-written request decoder and response encoder
/// against Foundation on the same bytes, measured side by side in one run.
///
/// Why a bench scenario and not a unit test: the figures are timings, meaningful only in a
/// release build on a quiet machine; inside `swift test` they cost seconds of a debug build and
/// assert nothing. The agreement of the codec with Foundation is a test
/// (CodecFoundationAgreementTests); this prints only the ratios.
///
/// The body is the one of notes/swift-on-linux.md §4: request_id, user_id, 30 floats, two query
/// terms and 10,000 Int64 ids; the response holds 10,000 items.
public enum CodecBenchmark {
    /// The request body the decode figures parse.
    public static func requestBody(candidates: Int) -> [UInt8] {
        var rng = SplitMix64(seed: 1)
        var s = "{\"request_id\":\"r-12345\",\"user\":{\"user_id\":\"u42\""
        for i in 0..<30 { s += ",\"f\(i)\":\(Float.random(in: -3...3, using: &rng))" }
        s += "},\"query\":{\"query_terms\":[\"red\",\"shoes\"]},\"k\":100,\"candidates\":["
        s += (0..<candidates).map { _ in String(Int64.random(in: 1_000_000_000...9_999_999_999, using: &rng)) }.joined(separator: ",")
        return Array((s + "]}").utf8)
    }

    /// The response the encode figures write.
    public static func response(items count: Int) -> PreRankResponse {
        var rng = SplitMix64(seed: 2)
        let items = (0..<count).map { i in
            ScoredItem(id: Int64(i) * 7919, score: Double.random(in: 0...1, using: &rng),
                       ctr: Float.random(in: 0...1, using: &rng), ctcvr: Float.random(in: 0...0.01, using: &rng))
        }
        return PreRankResponse(requestID: "r-1", modelVersion: "demo-20261123", partial: false, tookMs: 2.31,
                               items: items, unknownIDs: [1002, 1003])
    }

    /// Decode and encode figures, each beside its Foundation baseline; `repeats` timed runs of
    /// ours (Foundation gets a quarter as many, at least 5: it is the slow side).
    static func figures(repeats: Int, log: (String) -> Void) -> [BenchFigure] {
        log("codec: 10k-candidate request body, 10k-item response")
        let bytes = requestBody(candidates: 10_000)
        let data = Data(bytes)
        let decoder = JSONDecoder()
        let baseRuns = max(5, repeats / 4)
        let foundationDecode = timed(baseRuns) { _ = try? decoder.decode(FoundationRequest.self, from: data) }
        let oursDecode = timed(repeats) { bytes.withUnsafeBytes { raw in _ = try? RequestDecoder.decode(raw) } }

        let response = response(items: 10_000)
        let encoded = ResponseEncoder.encode(response)
        let object = (try? JSONSerialization.jsonObject(with: Data(encoded))) ?? [:]
        let foundationEncode = timed(baseRuns) { _ = try? JSONSerialization.data(withJSONObject: object) }
        let oursEncode = timed(repeats) { _ = ResponseEncoder.encode(response) }

        let decodeBase = ScoringBenchmark.median(foundationDecode)
        let encodeBase = ScoringBenchmark.median(foundationEncode)
        return [
            ScoringBenchmark.figure("codec", "-", "JSONDecoder decode", foundationDecode, note: "\(bytes.count) bytes"),
            ScoringBenchmark.figure("codec", "-", "RequestDecoder decode", oursDecode, baseline: "JSONDecoder decode",
                                    baseP50: decodeBase, note: "\(bytes.count) bytes"),
            ScoringBenchmark.figure("codec", "-", "JSONSerialization encode", foundationEncode, note: "10k items"),
            ScoringBenchmark.figure("codec", "-", "ResponseEncoder encode", oursEncode, baseline: "JSONSerialization encode",
                                    baseP50: encodeBase, note: "\(encoded.count) bytes"),
        ]
    }

    /// `runs` timings after a warm-up of 10.
    private static func timed(_ runs: Int, _ work: () -> Void) -> [Double] {
        for _ in 0..<10 { work() }
        return (0..<runs).map { _ in ScoringBenchmark.time(work) }
    }
}

/// What Foundation decodes the bench body into: the request's shape with typed fields, as a
/// client library would declare it.
private struct FoundationRequest: Decodable {
    enum Scalar: Decodable {
        case string(String)
        case number(Double)
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { self = .string(s) } else { self = .number(try c.decode(Double.self)) }
        }
    }

    var request_id: String
    var user: [String: Scalar]
    var query: [String: [String]]
    var k: Int
    var candidates: [Int64]
}
