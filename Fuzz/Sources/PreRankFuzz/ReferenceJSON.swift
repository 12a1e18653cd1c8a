/// An independent RFC 8259 validator for the JSON targets' differential check: whatever the
/// server's decoders accept must be one valid JSON text (UTF-8, the grammar of §2-§7, no
/// trailing bytes but whitespace). It checks grammar only: no depth, size or duplicate-key
/// limits, which may make the server refuse more, never accept more.
enum ReferenceJSON {
    static func isValid(_ b: [UInt8]) -> Bool {
        guard String(validating: b, as: UTF8.self) != nil else { return false }
        var i = 0
        func ws() { while i < b.count, b[i] == 32 || b[i] == 9 || b[i] == 10 || b[i] == 13 { i += 1 } }
        func literal(_ s: String) -> Bool {
            let u = Array(s.utf8)
            guard b.count - i >= u.count, Array(b[i..<(i + u.count)]) == u else { return false }
            i += u.count
            return true
        }
        func digits() -> Bool {
            let start = i
            while i < b.count, (48...57).contains(b[i]) { i += 1 }
            return i > start
        }
        func number() -> Bool {
            if i < b.count, b[i] == 45 { i += 1 }
            guard i < b.count else { return false }
            if b[i] == 48 { i += 1 } else if (49...57).contains(b[i]) { _ = digits() } else { return false }
            if i < b.count, b[i] == 46 { i += 1; guard digits() else { return false } }
            if i < b.count, b[i] == 101 || b[i] == 69 {
                i += 1
                if i < b.count, b[i] == 43 || b[i] == 45 { i += 1 }
                guard digits() else { return false }
            }
            return true
        }
        func string() -> Bool {
            guard i < b.count, b[i] == 34 else { return false }
            i += 1
            while i < b.count {
                let c = b[i]
                if c == 34 { i += 1; return true }
                if c < 32 { return false }
                if c == 92 {
                    guard i + 1 < b.count else { return false }
                    let e = b[i + 1]
                    if Array("\"\\/bfnrt".utf8).contains(e) { i += 2; continue }
                    guard e == 117, i + 5 < b.count,
                          b[(i + 2)...(i + 5)].allSatisfy({ (48...57).contains($0) || (65...70).contains($0) || (97...102).contains($0) }) else { return false }
                    i += 6
                    continue
                }
                i += 1
            }
            return false
        }
        func value(_ depth: Int) -> Bool {
            ws()
            guard i < b.count, depth < 10_000 else { return false }
            switch b[i] {
            case 123:
                i += 1
                ws()
                if i < b.count, b[i] == 125 { i += 1; return true }
                while true {
                    ws()
                    guard string() else { return false }
                    ws()
                    guard i < b.count, b[i] == 58 else { return false }
                    i += 1
                    guard value(depth + 1) else { return false }
                    ws()
                    guard i < b.count else { return false }
                    if b[i] == 44 { i += 1; continue }
                    if b[i] == 125 { i += 1; return true }
                    return false
                }
            case 91:
                i += 1
                ws()
                if i < b.count, b[i] == 93 { i += 1; return true }
                while true {
                    guard value(depth + 1) else { return false }
                    ws()
                    guard i < b.count else { return false }
                    if b[i] == 44 { i += 1; continue }
                    if b[i] == 93 { i += 1; return true }
                    return false
                }
            case 34: return string()
            case 116: return literal("true")
            case 102: return literal("false")
            case 110: return literal("null")
            default: return number()
            }
        }
        guard value(0) else { return false }
        ws()
        return i == b.count
    }
}
