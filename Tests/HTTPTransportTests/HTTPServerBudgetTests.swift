import Foundation
import Synchronization
import Testing
@testable import HTTPTransport

/// Keeps every request's `respond` until the test answers.
final class HoldingHandler: HTTPHandler {
    private let held = Mutex<[@Sendable (HTTPResponse) -> Void]>([])

    func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        held.withLock { $0.append(respond) }
    }

    /// These tests never see a refusal's body: a bare status will do.
    func renderRefusal(_ refusal: TransportRefusal) -> HTTPResponse { HTTPResponse(status: refusal.status) }

    var count: Int { held.withLock { $0.count } }

    func answerAll() {
        let all = held.withLock { h in defer { h = [] }; return h }
        for respond in all { respond(HTTPResponse(status: 200)) }
    }
}

/// The budget through the real shell: sockets, Dispatch, the server's own `MemoryBudget`.
@Suite struct HTTPServerBudgetTests {
    /// A blocking loopback client socket connected to `port`.
    func connect(_ port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(rc == 0)
        return fd
    }

    func waitUntil(_ what: String, _ condition: () -> Bool) async throws {
        for _ in 0..<500 where !condition() { try await Task.sleep(for: .milliseconds(10)) }
        try #require(condition(), "timed out waiting until \(what)")
    }

    /// Bodies leave the top of the budget to input, so that with uploads holding all they may
    /// a health check's head still fits; never so much that the largest body could not.
    @Test func bodiesLeaveHeadroomForInput() {
        var limits = TransportLimits()
        limits.maxBufferedBytes = 1600
        limits.maxBodyBytes = 1000
        let budget = MemoryBudget(limits: limits)
        #expect(budget.inputHeadroom == 100)
        #expect(budget.reserve(1500) && !budget.reserve(1))
        #expect(budget.reserveInput(100) && !budget.reserveInput(1))
        limits.maxBodyBytes = 1590
        #expect(MemoryBudget(limits: limits).inputHeadroom == 10)
    }

    /// Issue #20 (c): the connection closed by force (shutdown's drain deadline) while the
    /// application holds a request: the body's bytes stay reserved until the application
    /// answers. Before, the close released them while the body was still in use.
    @Test func aForcedCloseKeepsTheBodyReservedUntilTheApplicationAnswers() async throws {
        let handler = HoldingHandler()
        let server = HTTPServer(host: "127.0.0.1", port: 0, limits: TransportLimits(), handler: handler)
        let port = try server.start()
        let fd = try connect(port)
        defer { close(fd) }
        let request = Array("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n".utf8) + [UInt8](repeating: 120, count: 1000)
        #expect(request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } == request.count)
        try await waitUntil("the handler has the request") { handler.count == 1 }
        #expect(server.stats.bufferedBytes == 1000)
        let stopped = Atomic<Bool>(false)
        server.shutdown(drainTimeout: 0.05) { stopped.store(true, ordering: .relaxed) }
        try await waitUntil("the connection is closed") { stopped.load(ordering: .relaxed) && server.stats.open == 0 }
        #expect(server.stats.bufferedBytes == 1000, "released while the application holds the body")
        handler.answerAll()
        try await waitUntil("the budget is released") { server.stats.bufferedBytes == 0 }
    }
}
