import Catalog
@testable import PreRankServer
import StrictJSON
import TwinTower

/// An API refusal must be a 4xx with a code, and its body valid JSON (it is what the client reads).
func checkRefusal(_ e: APIError, _ target: String) {
    require((400...499).contains(e.status), target, "a body decoder answered status \(e.status)")
    require(!e.code.isEmpty && !e.message.isEmpty, target, "an error without code or message")
    require(ReferenceJSON.isValid(Array(e.jsonBody.utf8)), target, "the error body is not valid JSON: \(e.jsonBody)")
}

/// `request`: the `POST /prerank` body decoder (`RequestDecoder`).
///
/// Input: byte 0 picks `maxCandidates` (small, so the limit is reached), the rest is the body.
/// Checks: an accepted body is valid JSON (`ReferenceJSON`) and keeps the SPEC's rules
/// (candidates within the limit, one relevance 0…3 per candidate, k ≥ 1); a refusal is a
/// well-formed 4xx.
enum RequestTarget {
    static let name = "request"

    static func run(_ data: UnsafeRawBufferPointer) {
        var r = FuzzReader(data)
        let limitByte = Int(r.byte())
        let maxCandidates = limitByte == 0 ? Int.max : limitByte
        let body = r.rest()
        let request: PreRankRequest
        do throws(APIError) {
            request = try RequestDecoder.decode(body, maxCandidates: maxCandidates)
        } catch {
            checkRefusal(error, name)
            return
        }
        require(ReferenceJSON.isValid(body), name, "accepted a body that is not valid JSON")
        if let c = request.candidates { require(c.count <= maxCandidates, name, "\(c.count) candidates past the limit \(maxCandidates)") }
        if let rel = request.relevance {
            require(rel.count == request.candidates?.count, name, "relevance of \(rel.count) for \(request.candidates?.count ?? -1) candidates")
            require(rel.allSatisfy { $0 >= 0 && $0 <= 3 }, name, "relevance outside 0...3")
        }
        if let k = request.k { require(k >= 1, name, "k = \(k)") }
        if let f = request.fusion {
            for v in [f.alpha, f.beta, f.gamma] { if let v { require(v.isFinite, name, "non-finite fusion weight") } }
        }
    }
}

/// `items`: the `POST /admin/items` change decoder (`ItemChangeCodec`), also the update log's
/// payload format.
///
/// Checks: an accepted body is valid JSON; no id appears twice; the canonical `encode` of the
/// change decodes back to the same change (what the log replays is what was answered 200).
enum ItemsTarget {
    static let name = "items"

    static func run(_ data: UnsafeRawBufferPointer) {
        let body = Array(data)
        let change: CatalogChange
        do throws(APIError) {
            change = try ItemChangeCodec.decode(body)
        } catch {
            checkRefusal(error, name)
            return
        }
        require(ReferenceJSON.isValid(body), name, "accepted a body that is not valid JSON")
        let ids = change.upserts.map(\.id) + change.deletes
        require(Set(ids).count == ids.count, name, "an id appears twice in an accepted change")
        for u in change.upserts {
            require(u.row.values["item_id"] == .integer(u.id), name, "upsert row \(u.id) lost its item_id")
        }
        let encoded = ItemChangeCodec.encode(change)
        let again: CatalogChange
        do throws(APIError) {
            again = try ItemChangeCodec.decode(encoded)
        } catch {
            FuzzFailure.fail(name, "the canonical encoding of an accepted change is refused: \(error.message); encoding: \(String(decoding: encoded, as: UTF8.self))")
        }
        require(again.deletes == change.deletes, name, "deletes change on a round trip")
        require(again.upserts.count == change.upserts.count, name, "upserts change on a round trip")
        for (a, b) in zip(change.upserts, again.upserts) {
            require(a.id == b.id && a.row.values == b.row.values, name,
                    "upsert \(a.id) changes on a round trip: \(a.row.values) -> \(b.row.values)")
        }
    }
}
