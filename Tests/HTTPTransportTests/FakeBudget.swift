import Testing
@testable import HTTPTransport

/// The buffered-bytes budget as the state machine sees it, faked: a limit the test can move
/// (for bodies and input alike), the bytes in use, and a log of every call (+n reserved,
/// -n released).
final class FakeBudget: BufferBudget {
    var limit: Int
    private(set) var inUse = 0
    private(set) var log: [Int] = []

    init(limit: Int) { self.limit = limit }

    func reserve(_ bytes: Int) -> Bool {
        #expect(bytes >= 0, "negative reservation \(bytes)")
        guard inUse + bytes <= limit else { return false }
        inUse += bytes
        log.append(bytes)
        return true
    }

    func reserveInput(_ bytes: Int) -> Bool { reserve(bytes) }

    func release(_ bytes: Int) {
        inUse -= bytes
        log.append(-bytes)
        #expect(inUse >= 0, "released more than reserved")
    }
}
