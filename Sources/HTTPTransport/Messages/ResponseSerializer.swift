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

    /// Head and body as separate segments (no body for HEAD); a refusal is rendered by
    /// `render` (the application's `HTTPHandler.renderRefusal`).
    static func segments(_ out: ConnectionStateMachine.Outbound, render: (TransportRefusal) -> HTTPResponse) -> [[UInt8]] {
        let response = out.response(rendering: render)
        let h = head(response, keepAlive: out.keepAlive, minor: out.minorVersion)
        return out.isHead || response.body.isEmpty ? [h] : [h, response.body]
    }

    /// The whole answer to a connection refused at accept (`HTTPServer`, at `maxConnections`),
    /// sent with one `send` before the socket is closed: no connection, no keep-alive.
    ///
    /// Why not `head`: this answer has always put `Connection: close` before `Content-Length`,
    /// and the bytes on the wire stay as they were.
    static func refusedAtAccept(_ r: HTTPResponse, date: String = HTTPDate.now()) -> [UInt8] {
        var head = "HTTP/1.1 \(r.status) \(HTTPResponse.reason(r.status))\r\n"
        for (name, value) in r.headers where !name.caseInsensitiveEquals("content-length") && !name.caseInsensitiveEquals("connection")
            && !name.caseInsensitiveEquals("date") {
            head += "\(name): \(value)\r\n"
        }
        head += "Date: \(date)\r\nConnection: close\r\nContent-Length: \(r.body.count)\r\n\r\n"
        return Array(head.utf8) + r.body
    }
}

extension ConnectionStateMachine.Outbound {
    /// The response to serialise: the application's, or the refusal as `render` words it.
    func response(rendering render: (TransportRefusal) -> HTTPResponse) -> HTTPResponse {
        switch content {
        case .answer(let r): return r
        case .refusal(let r): return render(TransportRefusal(r))
        }
    }
}

