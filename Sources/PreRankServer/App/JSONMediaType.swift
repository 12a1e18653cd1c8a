import Foundation
import HTTPTransport
import StrictJSON

/// The Content-Type rule of every route that reads a JSON body, in one place so `/prerank` and
/// `/admin/items` cannot disagree.
enum JSONMediaType {
    /// 415 for a body declared as anything but JSON; nil for JSON, and for no Content-Type at
    /// all (taken as JSON, as curl users expect).
    static func refusal(_ request: HTTPRequest) -> APIError? {
        guard let type = request.header("content-type") else { return nil }
        let media = type.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        if media == "application/json" || media.hasSuffix("+json") { return nil }
        return APIError(status: 415, code: "unsupported_media_type", message: "Content-Type must be application/json, not \(type)", field: nil)
    }
}
