/// A streaming reader for the SPEC's CSV files (§3): header row, comma-separated, RFC 4180
/// quoting (`"a,b"`, `""` for a quote), LF or CRLF line ends.
///
/// The file is memory-mapped, so memory stays bounded by one row however large the file is
/// (mapped pages are page cache and can be dropped by the kernel).
public struct CSVReader: @unchecked Sendable {
    // `file` is immutable and keeps the mapping alive; the cursor is per value.
    public let path: String
    public private(set) var header: [String]
    private let file: MappedFile
    private var position: Int
    /// 1-based line number of the row last returned by `next()` (the header is line 1).
    public private(set) var line: Int

    public init(path: String) throws(FormatError) {
        self.path = path
        self.file = try MappedFile(path: path)
        self.position = 0
        self.line = 0
        self.header = []
        // A UTF-8 byte-order mark is skipped.
        if file.bytes.count >= 3 && file.bytes[0] == 0xEF && file.bytes[1] == 0xBB && file.bytes[2] == 0xBF { position = 3 }
        guard let h = try next() else { throw FormatError(path, "empty file: no header row") }
        self.header = h.map { $0.trimmingSpaces() }
    }

    /// Index of each header column by name.
    public var columns: [String: Int] {
        var out: [String: Int] = [:]
        for (i, name) in header.enumerated() where out[name] == nil { out[name] = i }
        return out
    }

    /// The next row's fields, or nil at end of file. Blank lines are skipped.
    public mutating func next() throws(FormatError) -> [String]? {
        let bytes = file.bytes
        while position < bytes.count {
            line += 1
            var fields: [String] = []
            var field: [UInt8] = []
            var inQuotes = false
            var atFieldStart = true
            var lineEmpty = true
            while position < bytes.count {
                let c = bytes[position]
                position += 1
                if inQuotes {
                    if c == UInt8(ascii: "\"") {
                        if position < bytes.count && bytes[position] == UInt8(ascii: "\"") {
                            field.append(c)
                            position += 1
                        } else {
                            inQuotes = false
                        }
                    } else {
                        if c == UInt8(ascii: "\n") { line += 1 }
                        field.append(c)
                    }
                    continue
                }
                switch c {
                case UInt8(ascii: ","):
                    fields.append(try decode(field))
                    field.removeAll(keepingCapacity: true)
                    atFieldStart = true
                    lineEmpty = false
                case UInt8(ascii: "\n"):
                    if field.last == UInt8(ascii: "\r") { field.removeLast() }
                    if lineEmpty && field.isEmpty && fields.isEmpty { atFieldStart = true; line += 1; continue }
                    fields.append(try decode(field))
                    return fields
                case UInt8(ascii: "\"") where atFieldStart:
                    inQuotes = true
                    atFieldStart = false
                    lineEmpty = false
                default:
                    field.append(c)
                    atFieldStart = false
                    lineEmpty = false
                }
            }
            if inQuotes { throw FormatError(path, "line \(line): unterminated quoted field") }
            if field.last == UInt8(ascii: "\r") { field.removeLast() }
            if lineEmpty && field.isEmpty && fields.isEmpty { return nil }
            fields.append(try decode(field))
            return fields
        }
        return nil
    }

    private func decode(_ bytes: [UInt8]) throws(FormatError) -> String {
        guard let s = String(validating: bytes, as: UTF8.self) else { throw FormatError(path, "line \(line): not valid UTF-8") }
        return s
    }
}

extension String {
    public func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}

/// Turning CSV cells into feature values (SPEC §3: `|` separates the values of a multi cell).
public enum CSVFeatures {
    /// The raw value of one cell for a field of `kind`; errors name the column and line.
    public static func value(_ cell: String, kind: FeatureKind, column: String, line: Int) throws(FeatureError) -> FeatureValue {
        switch kind {
        case .categorical:
            return cell.isEmpty ? .null : .string(cell)
        case .multi:
            if cell.isEmpty { return .array([]) }
            return .array(cell.split(separator: "|", omittingEmptySubsequences: true).map { .string(String($0)) })
        case .dense:
            let t = cell.trimmingSpaces()
            if t.isEmpty { return .null }
            guard let d = Double(t), d.isFinite else {
                throw FeatureError(field: "\(column) (line \(line))", message: "\"\(cell)\" is not a finite number")
            }
            return .number(d)
        }
    }

    /// Plain decimal Int64 (optional leading `-`), as item ids are written.
    public static func int64(_ cell: String) -> Int64? {
        let t = cell.trimmingSpaces()
        guard !t.isEmpty, t.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == "-") }) else { return nil }
        return Int64(t)
    }
}
