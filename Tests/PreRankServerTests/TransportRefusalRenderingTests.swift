import StrictJSON
import Testing
@testable import HTTPTransport
@testable import PreRankServer

/// The transport's refusals as the server renders them: the SPEC's JSON error body, the same
/// bytes as when the transport built `APIError`s itself (before the `HTTPTransport` target).
@Suite struct TransportRefusalRenderingTests {
    typealias Machine = ConnectionStateMachine

    func rendered(_ reason: Machine.Refusal.Reason) -> HTTPResponse {
        HTTPResponse.error(APIError(TransportRefusal(Machine.Refusal(reason: reason))))
    }

    @Test func machineRefusalsGetTheSpecErrorBody() {
        let busy = rendered(.budgetSpent)
        #expect(busy.status == 503 && busy.headers.contains { $0.name == "Retry-After" && $0.value == "1" })
        #expect(String(decoding: busy.body, as: UTF8.self) == #"{"error":{"code":"server_busy","message":"request buffers are full; retry shortly"}}"#)
        let late = rendered(.timedOut(.head))
        #expect(String(decoding: late.body, as: UTF8.self) == #"{"error":{"code":"request_timeout","message":"request head not received in time"}}"#)
        let big = rendered(.malformed(HTTPParser.Failure(status: 431, message: "m")))
        #expect(big.status == 431 && String(decoding: big.body, as: UTF8.self).contains(#""code":"header_too_large""#))
        let body = rendered(.bodyTooLarge(length: 9, limit: 8))
        #expect(String(decoding: body.body, as: UTF8.self) == #"{"error":{"code":"body_too_large","message":"body of 9 bytes is larger than the limit of 8"}}"#)
    }

    /// The answer at `maxConnections`, byte for byte as the listener wrote it by hand before:
    /// `Connection: close` ahead of `Content-Length`.
    @Test func tooManyConnectionsIsTheSameBytes() {
        let response = HTTPResponse.error(APIError(TransportRefusal.tooManyConnections))
        let bytes = ResponseSerializer.refusedAtAccept(response, date: "D")
        let body = #"{"error":{"code":"too_many_connections","message":"connection limit reached"}}"#
        let expected = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nDate: D\r\nConnection: close\r\n"
            + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
        #expect(String(decoding: bytes, as: UTF8.self) == expected)
    }

    /// The gzip and encoding refusals of `Connection`, as the API states them.
    @Test func encodingRefusalsKeepTheirCodes() {
        #expect(APIError(TransportRefusal.unsupportedEncoding("br"))
            == APIError(status: 415, code: "unsupported_encoding", message: "Content-Encoding br is not supported (gzip is)"))
        #expect(APIError(TransportRefusal.gzip(.tooLarge, limit: 7)) == APIError(status: 413, code: "body_too_large", message: "gzip body inflates past 7 bytes"))
        #expect(APIError(TransportRefusal.gzip(.overBudget, limit: 7))
            == APIError(status: 503, code: "server_busy", message: "request buffers are full; retry shortly", headers: [("Retry-After", "1")]))
        #expect(APIError(TransportRefusal.gzip(.corrupt, limit: 7)) == APIError(status: 400, code: "bad_encoding", message: "gzip body is corrupt"))
    }
}
