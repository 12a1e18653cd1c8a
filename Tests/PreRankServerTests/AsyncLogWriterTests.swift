import Foundation
import Testing
@testable import PreRankServer

@Suite struct AsyncLogWriterTests {
    func pipeFDs() -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        _ = pipe(&fds)
        return (fds[0], fds[1])
    }

    func readAll(_ fd: Int32, count: Int) -> String {
        var buf = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = buf.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress! + got, count - got) }
            if n <= 0 { break }
            got += n
        }
        return String(decoding: buf.prefix(got), as: UTF8.self)
    }

    @Test func linesAreWrittenInOrderAndUrgentOnesAfterQueuedOnes() {
        let (r, w) = pipeFDs()
        defer { close(r); close(w) }
        let writer = AsyncLogWriter(fd: w, capacity: 100)
        for i in 0..<10 { writer.submit("line \(i)\n") }
        writer.writeNow("urgent\n")
        let expected = (0..<10).map { "line \($0)\n" }.joined() + "urgent\n"
        #expect(readAll(r, count: expected.utf8.count) == expected)
    }

    @Test func aFullQueueDropsAndCounts() {
        let (r, w) = pipeFDs()
        defer { close(r); close(w) }
        let writer = AsyncLogWriter(fd: w, capacity: 0)
        let before = AsyncLogWriter.dropped
        writer.submit("lost\n")
        writer.submit("lost\n")
        writer.flush()
        #expect(AsyncLogWriter.dropped - before >= 2)
    }
}
