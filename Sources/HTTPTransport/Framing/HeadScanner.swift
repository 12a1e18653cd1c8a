/// Finds the end of a request head in a buffer that grows read by read, looking at each byte
/// once.
///
/// Why a resumable scanner: a head arrives in pieces, and a scan that restarts from byte 0 on
/// every read is quadratic in what the client sends. The old scan also skipped any number of
/// empty lines before the request line without counting them, so four clients each sending
/// 1 MiB of `\r\n` kept both cores busy (issue #20). Here the scanner keeps its position and a
/// few bits of line state between calls, every byte received before the end of the head counts
/// against `maxHeaderBytes` (431 past it, known at byte `maxHeaderBytes + 1`, without waiting
/// for the end), and at most `maxLeadingEmptyLines` empty lines may precede the request line
/// (RFC 9112 §2.2 lets a server ignore "at least one"; more is a 400).
///
/// Lines end in CRLF only: a bare LF, or a CR not followed by LF, is a 400 (a proxy in front
/// could frame either differently).
struct HeadScanner: Sendable, Equatable {
    /// Empty lines tolerated before the request line (a client's stray CRLF after a body).
    static let maxLeadingEmptyLines = 4

    let maxHeaderBytes: Int
    /// Bytes of the buffer examined so far; the next call starts here. Also the scanner's step
    /// count: a byte is examined once, so the work of a whole head is at most its length.
    private(set) var scanned = 0
    /// Index of the request line's first byte (past the tolerated empty lines), once seen.
    private(set) var requestStart: Int?
    private var phase: Phase = .lineStart
    private var emptyLines = 0

    enum Phase: Sendable, Equatable {
        /// At the start of a line (or of the buffer).
        case lineStart
        /// Inside a line that has content.
        case inLine
        /// Just after a CR; `emptyLine` when the CR began its line.
        case afterCR(emptyLine: Bool)
    }

    init(maxHeaderBytes: Int) { self.maxHeaderBytes = maxHeaderBytes }

    /// Scans `buffer` from where the last call stopped. `buffer` must hold the bytes the last
    /// call saw, unchanged, followed by any new ones.
    mutating func scan(_ buffer: UnsafeRawBufferPointer) -> HTTPParser.HeadScan {
        precondition(buffer.count >= scanned, "head buffer shrank under the scanner (\(buffer.count) < \(scanned))")
        var i = scanned
        defer { scanned = i }
        while i < buffer.count {
            // Byte `i` would make the head at least `i + 1` bytes long.
            guard i < maxHeaderBytes else {
                return .failure(HTTPParser.Failure(status: 431, message: "request head is larger than \(maxHeaderBytes) bytes"))
            }
            let c = buffer[i]
            switch phase {
            case .lineStart:
                if c == 13 {
                    phase = .afterCR(emptyLine: true)
                } else if c == 10 {
                    return .failure(Self.bareLF)
                } else {
                    if requestStart == nil { requestStart = i }
                    phase = .inLine
                }
            case .inLine:
                if c == 13 {
                    phase = .afterCR(emptyLine: false)
                } else if c == 10 {
                    return .failure(Self.bareLF)
                }
            case .afterCR(let emptyLine):
                guard c == 10 else { return .failure(Self.strayCR) }
                phase = .lineStart
                if emptyLine {
                    if requestStart != nil {
                        i += 1
                        return .complete(end: i)
                    }
                    emptyLines += 1
                    guard emptyLines <= Self.maxLeadingEmptyLines else {
                        return .failure(HTTPParser.Failure(
                            status: 400, message: "more than \(Self.maxLeadingEmptyLines) empty lines before the request line"))
                    }
                }
            }
            i += 1
        }
        return .incomplete
    }

    static let bareLF = HTTPParser.Failure(status: 400, message: "bare LF in the request head (lines must end in CRLF)")
    static let strayCR = HTTPParser.Failure(status: 400, message: "stray CR or NUL in the request head")
}
