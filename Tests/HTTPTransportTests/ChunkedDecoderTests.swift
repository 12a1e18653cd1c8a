import Testing
@testable import HTTPTransport

/// `ChunkedDecoder` against RFC 9112 §7.1's grammar for chunk extensions and trailers (fuzz
/// finding 4, docs/FUZZING.md): what the grammar refuses is a 400, whole or fed a byte at a time.
@Suite struct ChunkedDecoderTests {
    enum Outcome: Equatable {
        case done(body: String, used: Int)
        case failure(status: Int)
        case needMore
    }

    /// Decodes `text` in feeds of `step` bytes.
    func decode(_ text: String, step: Int = .max) -> Outcome {
        let bytes = Array(text.utf8)
        var decoder = ChunkedDecoder(maxBody: 1 << 20)
        var body: [UInt8] = []
        var offset = 0
        while offset < bytes.count {
            let n = min(step, bytes.count - offset)
            let result = bytes.withUnsafeBytes { decoder.feed(UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + n)]), into: &body) }
            switch result {
            case .needMore, .needRoom: offset += n
            case .done(let used): return .done(body: String(decoding: body, as: UTF8.self), used: offset + used)
            case .failure(let f): return .failure(status: f.status)
            }
        }
        return .needMore
    }

    /// Both whole and a byte at a time.
    func expectOutcome(_ text: String, _ expected: Outcome, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(decode(text) == expected, "whole: \(text.debugDescription)", sourceLocation: sourceLocation)
        #expect(decode(text, step: 1) == expected, "byte at a time: \(text.debugDescription)", sourceLocation: sourceLocation)
    }

    @Test func extensionsOfTheGrammarAreAccepted() {
        for line in ["4;ext", "4;ext=1", "4 ;a=b", "4\t; a = b ;c", "4;a=\"q\\\"x y\"", "4;a=\"\";b", "4;a=tok;b=\"\\\t\""] {
            let text = line + "\r\nWiki\r\n0\r\n\r\n"
            expectOutcome(text, .done(body: "Wiki", used: text.utf8.count))
        }
    }

    @Test func extensionsOutsideTheGrammarAreRefused() {
        for line in ["1;\0\0a=\"q\\\"x\"", "1;", "1; ", "1 ", "1\t", "1;a ", "1;a=", "1;a= ", "1;a=b ", "1;a=\"x", "1;a=\"x\"y",
                     "1;a=b=c", "1;=b", "1;a=\"\u{7F}\"", "1;a\u{1}", "1;a=\"\\\u{1}\"", "1 x", "1;a b"] {
            expectOutcome(line + "\r\nx\r\n0\r\n\r\n", .failure(status: 400))
        }
    }

    @Test func trailersOfTheGrammarAreAccepted() {
        for trailers in ["X-Trailer: y\r\n", "A:\r\nB: v w\t\r\n", "x:\u{80}\u{FF}\r\n"] {
            let text = "3\r\nabc\r\n0\r\n" + trailers + "\r\nNEXT"
            expectOutcome(text, .done(body: "abc", used: text.utf8.count - 4))
        }
    }

    @Test func trailersOutsideTheGrammarAreRefused() {
        for trailers in ["W\r\n", "X-\u{14}rainew: y\r\n", ": y\r\n", " X: y\r\n", "X : y\r\n", "X: a\0b\r\n", "X: \u{7F}\r\n",
                         "X:\ry\r\n"] {
            expectOutcome("3\r\nabc\r\n0\r\n" + trailers + "\r\n", .failure(status: 400))
        }
    }

    /// The fuzzer's reproducers: `0;ex.\03` then the trailer lines `W` and `X-\x14rainew: y`,
    /// and NUL bytes after `;`.
    @Test func theFuzzFindingsAreRefused() {
        expectOutcome("0;ex.\u{0}3\r\nW\r\nX-\u{14}rainew: y\r\n\r\n", .failure(status: 400))
        expectOutcome("1;" + String(repeating: "\0", count: 19) + "a=\"q\\\"x\"\r\nx\r\n0\r\n\r\n", .failure(status: 400))
    }

    /// The bound on a size line still holds for a line of valid extensions.
    @Test func aLongExtensionLineIsRefused() {
        let text = "1;" + String(repeating: "a", count: 2000) + "\r\nx\r\n0\r\n\r\n"
        expectOutcome(text, .failure(status: 400))
    }
}
