/// An independent whole-input decoder of RFC 9112 §7.1 chunked coding, written from the grammar
/// (not from `ChunkedDecoder`), for the `chunked` target's differential check:
///
///     chunked-body   = *chunk last-chunk trailer-section CRLF
///     chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
///     chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
///     chunk-ext-val  = token / quoted-string
///     trailer-section = *( field-line CRLF );  field-line = field-name ":" OWS field-value OWS
///
/// Returns the body and the bytes used, or nil when the grammar refuses the input (or it ends
/// early). No size limits: limits may make the server refuse more, never accept more.
enum ReferenceChunked {
    static func decode(_ b: [UInt8]) -> (body: [UInt8], used: Int)? {
        var i = 0
        var body: [UInt8] = []
        func isHex(_ c: UInt8) -> Bool { (48...57).contains(c) || (65...70).contains(c) || (97...102).contains(c) }
        func hexValue(_ c: UInt8) -> Int { c <= 57 ? Int(c) - 48 : (c <= 70 ? Int(c) - 55 : Int(c) - 87) }
        func isTchar(_ c: UInt8) -> Bool {
            (48...57).contains(c) || (65...90).contains(c) || (97...122).contains(c) || Array("!#$%&'*+-.^_`|~".utf8).contains(c)
        }
        func skipBWS() { while i < b.count, b[i] == 32 || b[i] == 9 { i += 1 } }
        func token() -> Bool {
            let start = i
            while i < b.count, isTchar(b[i]) { i += 1 }
            return i > start
        }
        func quoted() -> Bool {
            guard i < b.count, b[i] == 34 else { return false }
            i += 1
            while i < b.count {
                let c = b[i]
                if c == 34 { i += 1; return true }
                if c == 92 {  // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                    guard i + 1 < b.count, b[i + 1] == 9 || b[i + 1] >= 32 && b[i + 1] != 127 else { return false }
                    i += 2
                    continue
                }
                guard c == 9 || c == 32 || c == 33 || (35...91).contains(c) || (93...126).contains(c) || c >= 128 else { return false }
                i += 1
            }
            return false
        }
        func crlf() -> Bool {
            guard i + 1 < b.count, b[i] == 13, b[i + 1] == 10 else { return false }
            i += 2
            return true
        }
        while true {
            // chunk-size
            var size = 0
            let start = i
            while i < b.count, isHex(b[i]) {
                let (m, o1) = size.multipliedReportingOverflow(by: 16)
                let (s, o2) = m.addingReportingOverflow(hexValue(b[i]))
                if o1 || o2 { return nil }
                size = s
                i += 1
            }
            guard i > start else { return nil }
            // chunk-ext
            while true {
                let save = i
                skipBWS()
                guard i < b.count, b[i] == 59 else { i = save; break }
                i += 1
                skipBWS()
                guard token() else { return nil }
                let beforeValue = i
                skipBWS()
                if i < b.count, b[i] == 61 {
                    i += 1
                    skipBWS()
                    guard token() || quoted() else { return nil }
                } else {
                    i = beforeValue
                }
            }
            guard crlf() else { return nil }
            if size == 0 { break }
            guard b.count - i >= size else { return nil }
            body.append(contentsOf: b[i..<(i + size)])
            i += size
            guard crlf() else { return nil }
        }
        // trailer-section
        while true {
            if crlf() { return (body, i) }
            guard token(), i < b.count, b[i] == 58 else { return nil }
            i += 1
            while i < b.count, b[i] == 9 || b[i] == 32 || (b[i] >= 33 && b[i] != 127) { i += 1 }
            guard crlf() else { return nil }
        }
    }
}
