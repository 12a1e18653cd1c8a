/// Incremental decoder of a chunked body (RFC 9112 §7.1): `size[;ext] CRLF data CRLF … 0 CRLF
/// trailers CRLF`.
///
/// Why incremental: the old decoder re-parsed the whole buffered body on every read (quadratic
/// for a body dripped in small chunks) and needed the raw chunked bytes buffered besides the
/// decoded body. This one keeps a few integers of state, appends data to the caller's body as
/// it arrives and never looks at a byte twice. Line ends must be CRLF; a size of more than 15
/// hex digits (overflow), junk after the size, or a body past `maxBody` is refused.
///
/// Chunk extensions and trailer lines are held to RFC 9112's grammar (§7.1.1, §7.1.2), though
/// the server uses neither: `chunk-ext = *( BWS ";" BWS token [ BWS "=" BWS ( token /
/// quoted-string ) ] )` and `field-name ":" field-value`. Why: a decoder that skips any bytes up
/// to CR frames differently from a stricter proxy in front of it (NUL bytes or a bare name where
/// a proxy sees the end of the line) — the ground of request smuggling — so what the grammar
/// refuses is a 400 here too, as the fuzz target's reference decoder checks.
struct ChunkedDecoder: Sendable, Equatable {
    /// Where the decoder is inside a chunk extension.
    enum ExtensionPart: Sendable, Equatable {
        /// Blanks after the size or an extension: only more blanks or `;` may follow.
        case blanks
        /// After `;` (and blanks): the name's first byte is due.
        case nameStart
        case name
        /// Blanks after a name: `=`, `;` or more blanks.
        case afterName
        /// After `=` (and blanks): a token or a quoted string is due.
        case valueStart
        case tokenValue
        case quoted
        /// After a backslash inside a quoted string.
        case quotedPair
        /// After the closing quote.
        case afterQuoted

        /// Whether the size line may end here: after a whole extension, not inside one or after
        /// blanks (the grammar has no trailing blanks).
        var mayEndLine: Bool { self == .name || self == .tokenValue || self == .afterQuoted }
    }

    enum Phase: Sendable, Equatable {
        case size(value: Int, digits: Int)
        case extensions(value: Int, part: ExtensionPart)
        case sizeLF(value: Int)
        case data(remaining: Int)
        case dataCR
        case dataLF
        case trailerStart
        case trailerName
        case trailerValue
        case trailerLF
        case finalLF
        case done
    }

    enum Step: Equatable, Sendable {
        /// Every byte was used; more are needed.
        case needMore
        /// Stopped after `used` bytes: the next byte is chunk data and `room` is spent. Call
        /// again with the rest once there is room.
        case needRoom(used: Int)
        /// The body ended after `used` bytes of this input (what follows is the next request).
        case done(used: Int)
        case failure(HTTPParser.Failure)
    }

    let maxBody: Int
    private(set) var phase: Phase = .size(value: 0, digits: 0)
    /// Size line plus extensions, and trailers, are bounded so a client cannot stream them forever.
    private var lineBytes = 0
    private var trailerBytes = 0
    /// Decoded body bytes so far.
    private(set) var bodyCount = 0

    static let maxLineBytes = 1024
    static let maxTrailerBytes = 16384

    init(maxBody: Int) { self.maxBody = maxBody }

    /// Data bytes the next `feed` of `available` bytes may need first: the rest of the current
    /// chunk when inside one (what `needRoom` asks room for), else `available`.
    func dataBytes(in available: Int) -> Int {
        if case .data(let remaining) = phase { return min(remaining, available) }
        return available
    }

    var isDone: Bool { phase == .done }

    /// Consumes `input`, appending chunk data to `body`, at most `room` bytes of it.
    ///
    /// Why `room`: the caller reserves budget for what it buffers. A read can hold the end of
    /// one chunk and whole further chunks, so the caller cannot know from the current chunk
    /// alone how much a feed will append; instead the decoder stops where the room ends.
    mutating func feed(_ input: UnsafeRawBufferPointer, into body: inout [UInt8], room: Int = .max) -> Step {
        feed(input, room: room) { body.append(contentsOf: $0) }
    }

    /// Whether `input` completes the body (decoded on a copy, nothing kept): tells a connection
    /// whose peer has closed whether the input it holds is a whole request.
    func wouldFinish(_ input: UnsafeRawBufferPointer) -> Bool {
        var probe = self
        if case .done = probe.feed(input, room: .max, append: { _ in }) { return true }
        return false
    }

    private mutating func feed(_ input: UnsafeRawBufferPointer, room: Int, append: (UnsafeRawBufferPointer) -> Void) -> Step {
        var room = room
        var i = 0
        let n = input.count
        func fail(_ status: Int, _ message: String) -> Step { .failure(HTTPParser.Failure(status: status, message: message)) }
        while i < n {
            let c = input[i]
            switch phase {
            case .size(let value, let digits):
                if let v = Self.hex(c) {
                    guard digits < 15 else { return fail(400, "chunk size too large") }
                    phase = .size(value: value * 16 + v, digits: digits + 1)
                } else {
                    guard digits > 0 else { return fail(400, "invalid chunk size") }
                    switch c {
                    case 13: phase = .sizeLF(value: value)
                    case UInt8(ascii: ";"): phase = .extensions(value: value, part: .nameStart)
                    case UInt8(ascii: " "), UInt8(ascii: "\t"): phase = .extensions(value: value, part: .blanks)
                    default: return fail(400, "invalid chunk size")
                    }
                }
                lineBytes += 1
                i += 1
            case .extensions(let value, let part):
                if c == 10 { return fail(400, "bare LF in a chunk size line") }
                if c == 13 {
                    guard part.mayEndLine else { return fail(400, "invalid chunk extension") }
                    phase = .sizeLF(value: value)
                } else {
                    guard let next = Self.extensionStep(part, c) else { return fail(400, "invalid chunk extension") }
                    phase = .extensions(value: value, part: next)
                }
                lineBytes += 1
                guard lineBytes <= Self.maxLineBytes else { return fail(400, "chunk size line too long") }
                i += 1
            case .sizeLF(let value):
                guard c == 10 else { return fail(400, "chunk size line not ended by CRLF") }
                lineBytes = 0
                i += 1
                if value == 0 {
                    phase = .trailerStart
                } else {
                    guard value <= maxBody - bodyCount else { return fail(413, "chunked body is larger than the limit of \(maxBody) bytes") }
                    phase = .data(remaining: value)
                }
            case .data(let remaining):
                let take = min(remaining, n - i, room)
                guard take > 0 else { return .needRoom(used: i) }
                append(UnsafeRawBufferPointer(rebasing: input[i..<(i + take)]))
                room -= take
                bodyCount += take
                i += take
                phase = remaining == take ? .dataCR : .data(remaining: remaining - take)
            case .dataCR:
                guard c == 13 else { return fail(400, "chunk data not followed by CRLF") }
                phase = .dataLF
                i += 1
            case .dataLF:
                guard c == 10 else { return fail(400, "chunk data not followed by CRLF") }
                phase = .size(value: 0, digits: 0)
                i += 1
            case .trailerStart:
                if c == 10 { return fail(400, "bare LF in the trailers") }
                if c == 13 { phase = .finalLF } else if Self.isTokenByte(c) { phase = .trailerName } else {
                    return fail(400, "invalid trailer field name")
                }
                trailerBytes += 1
                i += 1
            case .trailerName:
                if c == UInt8(ascii: ":") { phase = .trailerValue } else if !Self.isTokenByte(c) {
                    return fail(400, c == 13 || c == 10 ? "trailer line without a colon" : "invalid trailer field name")
                }
                trailerBytes += 1
                guard trailerBytes <= Self.maxTrailerBytes else { return fail(431, "trailers larger than \(Self.maxTrailerBytes) bytes") }
                i += 1
            case .trailerValue:
                if c == 13 { phase = .trailerLF } else if c == 10 { return fail(400, "bare LF in the trailers") } else if !Self.isFieldByte(c) {
                    return fail(400, "invalid byte in a trailer field value")
                }
                trailerBytes += 1
                guard trailerBytes <= Self.maxTrailerBytes else { return fail(431, "trailers larger than \(Self.maxTrailerBytes) bytes") }
                i += 1
            case .trailerLF:
                guard c == 10 else { return fail(400, "trailer line not ended by CRLF") }
                phase = .trailerStart
                i += 1
            case .finalLF:
                guard c == 10 else { return fail(400, "chunked body not ended by CRLF") }
                phase = .done
                return .done(used: i + 1)
            case .done:
                return .done(used: i)
            }
        }
        return phase == .done ? .done(used: n) : .needMore
    }

    /// The next part of a chunk extension after byte `c` (not CR or LF), nil when the grammar
    /// refuses `c` there.
    static func extensionStep(_ part: ExtensionPart, _ c: UInt8) -> ExtensionPart? {
        let blank = c == 32 || c == 9
        let semicolon = c == UInt8(ascii: ";")
        switch part {
        case .blanks:
            return blank ? .blanks : semicolon ? .nameStart : nil
        case .nameStart:
            return blank ? .nameStart : isTokenByte(c) ? .name : nil
        case .name, .afterName:
            if part == .name && isTokenByte(c) { return .name }
            return blank ? .afterName : semicolon ? .nameStart : c == UInt8(ascii: "=") ? .valueStart : nil
        case .valueStart:
            return blank ? .valueStart : c == UInt8(ascii: "\"") ? .quoted : isTokenByte(c) ? .tokenValue : nil
        case .tokenValue, .afterQuoted:
            if part == .tokenValue && isTokenByte(c) { return .tokenValue }
            return blank ? .blanks : semicolon ? .nameStart : nil
        case .quoted:
            // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
            if c == UInt8(ascii: "\"") { return .afterQuoted }
            if c == UInt8(ascii: "\\") { return .quotedPair }
            return c == 9 || (c >= 32 && c != 127) ? .quoted : nil
        case .quotedPair:
            // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
            return c == 9 || (c >= 32 && c != 127) ? .quoted : nil
        }
    }

    /// tchar (RFC 9110 §5.6.2).
    static func isTokenByte(_ c: UInt8) -> Bool {
        switch c {
        case 48...57, 65...90, 97...122: return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
             UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
             UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default: return false
        }
    }

    /// A byte of a field value (RFC 9110 §5.5): VCHAR, obs-text, SP, HTAB.
    static func isFieldByte(_ c: UInt8) -> Bool { c == 9 || (c >= 32 && c != 127) }

    static func hex(_ c: UInt8) -> Int? {
        switch c {
        case 48...57: return Int(c) - 48
        case 65...70: return Int(c) - 55
        case 97...102: return Int(c) - 87
        default: return nil
        }
    }
}
