import StrictJSON
import TwinTower

/// The JSON of a live-catalog change: the `POST /admin/items` body (SPEC §2) and the payload of
/// an update-log record (the same shape, written canonically by `encode`).
///
///     {"upsert": [{"item_id": 123, "price": 9.9, "category": "c3", "tags": ["a", "b"]}], "delete": [456]}
///
/// Rules, each a 400 naming the path: the body is one object with only `upsert` and `delete`
/// (either may be absent or null); every upsert row is an object with an integer `item_id`;
/// feature values are typed like request features (scalars or arrays of scalars; whether a
/// value suits its field is the encoder's check, `upsert[i].<field>`); an id appears at most once
/// across `upsert` and `delete` (which one wins would be a guess).
public enum ItemChangeCodec {
    public static func decode(_ body: [UInt8]) throws(APIError) -> CatalogChange {
        let result: Result<CatalogChange, APIError> = body.withUnsafeBytes { raw in
            guard let base = raw.baseAddress, raw.count > 0 else { return .failure(.badJSON("empty body; expected a JSON object")) }
            var parser = ChangeParser(s: JSONScanner(bytes: base.assumingMemoryBound(to: UInt8.self), count: raw.count))
            do throws(APIError) { return .success(try parser.change()) } catch where error.code != "bad_json" {
                var check = parser.s
                check.pos = 0
                do throws(APIError) { try check.validateDocument() } catch { return .failure(error) }
                return .failure(error)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// The canonical JSON of a change (the log payload): `item_id` first, then fields by name.
    public static func encode(_ change: CatalogChange) -> [UInt8] {
        var out = "{\"upsert\":["
        for (i, u) in change.upserts.enumerated() {
            if i > 0 { out += "," }
            out += "{\"item_id\":\(u.id)"
            for name in u.row.values.keys.sorted() where name != "item_id" {
                out += ",\(JSONText.quote(name)):\(json(u.row.values[name]!))"
            }
            out += "}"
        }
        out += "],\"delete\":[\(change.deletes.map(String.init).joined(separator: ","))]}"
        return Array(out.utf8)
    }

    static func json(_ v: FeatureValue) -> String {
        switch v {
        case .string(let s): return JSONText.quote(s)
        case .integer(let i): return String(i)
        // Swift prints the shortest text that reads back as the same Double ("9.9", "1e+20").
        case .number(let d): return d.description
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .array(let a): return "[" + a.map(json).joined(separator: ",") + "]"
        }
    }
}

private struct ChangeParser {
    var s: JSONScanner

    mutating func change() throws(APIError) -> CatalogChange {
        try s.openBodyObject()
        var upserts: [CatalogChange.Upsert] = []
        var deletes: [Int64] = []
        var seen: Set<String> = []
        var first = true
        while try s.nextMember(&first) {
            let keyOffset = s.pos
            let name = try s.key()
            guard seen.insert(name).inserted else { throw .badJSON("duplicate key \(JSONText.quote(name)) at byte \(keyOffset)", field: name) }
            if s.current == UInt8(ascii: "n") { try s.literal("null"); continue }
            switch name {
            case "upsert": upserts = try upsertList()
            case "delete": deletes = try deleteList()
            default: throw .badField(name, "unknown key; a change holds only upsert and delete")
            }
        }
        try s.closeBody()
        var ids = Set<Int64>()
        for (i, u) in upserts.enumerated() where !ids.insert(u.id).inserted {
            throw .badField("upsert[\(i)].item_id", "item \(u.id) appears twice in upsert")
        }
        for (i, id) in deletes.enumerated() where !ids.insert(id).inserted {
            throw .badField("delete[\(i)]", "item \(id) appears twice in this change (upsert and delete, or delete twice)")
        }
        return CatalogChange(upserts: upserts, deletes: deletes)
    }

    private mutating func upsertList() throws(APIError) -> [CatalogChange.Upsert] {
        guard s.current == UInt8(ascii: "[") else { throw .badField("upsert", "upsert must be an array of item objects") }
        s.pos += 1
        var out: [CatalogChange.Upsert] = []
        var first = true
        while try s.nextElement(&first) {
            out.append(try row("upsert[\(out.count)]"))
        }
        return out
    }

    private mutating func row(_ path: String) throws(APIError) -> CatalogChange.Upsert {
        guard s.current == UInt8(ascii: "{") else { throw .badField(path, "an upsert row must be an object of item fields") }
        s.pos += 1
        var values: [String: FeatureValue] = [:]
        var first = true
        while try s.nextMember(&first) {
            let keyOffset = s.pos
            let name = try s.key()
            let value = try featureValue("\(path).\(name)")
            guard values.updateValue(value, forKey: name) == nil else {
                throw .badJSON("duplicate key \(JSONText.quote(name)) at byte \(keyOffset)", field: "\(path).\(name)")
            }
        }
        guard case .integer(let id)? = values["item_id"] else {
            throw .badField("\(path).item_id", "an upsert row needs an integer item_id")
        }
        // Encoding errors name `upsert[i].<field>`: the row's fields all come from `upsert[i]`.
        let sources = Dictionary(uniqueKeysWithValues: values.keys.map { ($0, path) })
        return CatalogChange.Upsert(id: id, row: FeatureRow(values: values, sources: sources))
    }

    private mutating func deleteList() throws(APIError) -> [Int64] {
        guard s.current == UInt8(ascii: "[") else { throw .badField("delete", "delete must be an array of integer ids") }
        s.pos += 1
        var ids: [Int64] = []
        var first = true
        while try s.nextElement(&first) {
            guard s.atNumber, let v = try s.number().int64 else {
                throw .badField("delete[\(ids.count)]", "an id to delete must be an integer")
            }
            ids.append(v)
        }
        return ids
    }

    private mutating func featureValue(_ path: String) throws(APIError) -> FeatureValue {
        try s.featureValue(at: path)
    }
}
