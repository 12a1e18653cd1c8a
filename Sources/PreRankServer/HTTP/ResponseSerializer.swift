import Foundation
import Synchronization

/// Serialises an answer into a head and a body, kept apart so the connection can write both
/// with one `writev` instead of copying the body behind the head.
enum ResponseSerializer {
    /// The status line and headers, with `Date` (RFC 9110 §6.6.1: an origin server with a clock
    /// sends it), `Content-Length`, and `Connection` as the keep-alive decision says.
    static func head(_ r: HTTPResponse, keepAlive: Bool, minor: Int, date: String = HTTPDate.now()) -> [UInt8] {
        var head = "HTTP/1.1 \(r.status) \(HTTPResponse.reason(r.status))\r\n"
        for (name, value) in r.headers where !name.caseInsensitiveEquals("content-length") && !name.caseInsensitiveEquals("connection")
            && !name.caseInsensitiveEquals("date") {
            head += "\(name): \(value)\r\n"
        }
        head += "Date: \(date)\r\n"
        head += "Content-Length: \(r.body.count)\r\n"
        if !keepAlive { head += "Connection: close\r\n" } else if minor == 0 { head += "Connection: keep-alive\r\n" }
        head += "\r\n"
        return Array(head.utf8)
    }

    /// Head and body as separate segments (no body for HEAD).
    static func segments(_ out: ConnectionStateMachine.Outbound) -> [[UInt8]] {
        let response = out.response
        let h = head(response, keepAlive: out.keepAlive, minor: out.minorVersion)
        return out.isHead || response.body.isEmpty ? [h] : [h, response.body]
    }
}

/// The IMF-fixdate of now, formatted at most once a second (it is on every response).
enum HTTPDate {
    private static let cache = Mutex<(second: Int, text: String)>((-1, ""))

    static func now() -> String {
        var t = time(nil)
        let second = Int(t)
        if let hit = cache.withLock({ $0.second == second ? $0.text : nil }) { return hit }
        var tm = tm()
        gmtime_r(&t, &tm)
        var buf = [CChar](repeating: 0, count: 64)
        let n = strftime(&buf, buf.count, "%a, %d %b %Y %H:%M:%S GMT", &tm)
        let text = String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        cache.withLock { $0 = (second, text) }
        return text
    }
}
