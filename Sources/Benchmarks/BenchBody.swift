import Foundation
import PreRankServer

/// The body shape of the JSONDecoder baseline for parsing.
struct BenchBody: Codable {
    var request_id: String
    var user: [String: String]
    var query: [String: [String]]
    var candidates: [Int64]
    var k: Int

    static func json(_ r: PreRankRequest) -> Data {
        var s = "{\"request_id\":\"\(r.requestID ?? "")\",\"user\":{\"user_id\":\"u1\"},\"query\":{\"query_terms\":[\"a\",\"b\"]},\"candidates\":["
        s += (r.candidates ?? []).map(String.init).joined(separator: ",")
        s += "],\"k\":\(r.k ?? 100)}"
        return Data(s.utf8)
    }
}
