import Foundation
import Training

/// Helpers for the generator tests: small worlds, temp directories, an RFC 4180 reader.
enum SynthSupport {
    /// A world small enough to generate in well under a second in a debug build.
    static func smallConfig(seed: UInt64 = 7, requests: Int = 150) -> WorldConfig {
        var c = WorldConfig(users: 120, items: 400, queries: 90, requests: requests, candidates: 20, seed: seed)
        c.categories = 12
        c.calibrationRequests = 200
        return c
    }

    static func tempDirectory(_ tag: String) -> String {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("prerank-synth-\(tag)-\(UUID().uuidString)").path
        return dir
    }

    static func remove(_ dir: String) { try? FileManager.default.removeItem(atPath: dir) }

    static func bytes(_ dir: String, _ file: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: dir).appendingPathComponent(file))
    }

    static func text(_ dir: String, _ file: String) throws -> String {
        String(decoding: try bytes(dir, file), as: UTF8.self)
    }

    /// Parses RFC 4180 CSV (quoted fields with doubled quotes, `\n` or `\r\n` row ends).
    static func parseCSV(_ text: String) -> [[String]] {
        var rows: [[String]] = []
        var row: [String] = []
        var field: [UInt8] = []
        var inQuotes = false
        let bytes = Array(text.utf8)
        var i = 0
        func endField() { row.append(String(decoding: field, as: UTF8.self)); field.removeAll(keepingCapacity: true) }
        while i < bytes.count {
            let b = bytes[i]
            if inQuotes {
                if b == UInt8(ascii: "\"") {
                    if i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "\"") { field.append(b); i += 1 }
                    else { inQuotes = false }
                } else { field.append(b) }
            } else {
                switch b {
                case UInt8(ascii: "\""): inQuotes = true
                case UInt8(ascii: ","): endField()
                case 13: break
                case 10: endField(); rows.append(row); row = []
                default: field.append(b)
                }
            }
            i += 1
        }
        if !field.isEmpty || !row.isEmpty { endField(); rows.append(row) }
        return rows
    }

    /// A parsed impressions file: header and rows, with column lookup.
    struct Table {
        var header: [String]
        var rows: [[String]]
        func index(_ column: String) -> Int { header.firstIndex(of: column)! }
        func column(_ name: String) -> [String] { let j = index(name); return rows.map { $0[j] } }
        func doubles(_ name: String) -> [Double] { column(name).map { Double($0)! } }
        func ints(_ name: String) -> [Int] { column(name).map { Int($0)! } }
    }

    static func table(_ dir: String, _ file: String) throws -> Table {
        let all = parseCSV(try text(dir, file))
        return Table(header: all[0], rows: Array(all.dropFirst()))
    }
}
