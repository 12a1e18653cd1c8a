import StrictJSON
/// Writes one JSON object field by field, in the order written. A typed document renders through
/// it rather than `JSONEncoder` because the answer must keep its bytes: key order, and numbers
/// spelled as Swift prints them (`150.0`, not `150`), which clients and tests already compare.
struct JSONObjectWriter {
    private var text = "{"
    private var empty = true

    /// The object's text, closed.
    var json: String { text + "}" }

    private mutating func key(_ name: String) {
        if !empty { text += "," }
        empty = false
        text += JSONText.quote(name) + ":"
    }

    mutating func string(_ name: String, _ value: String) {
        key(name)
        text += JSONText.quote(value)
    }

    /// `null` for nil.
    mutating func string(_ name: String, _ value: String?) {
        key(name)
        text += value.map(JSONText.quote) ?? "null"
    }

    /// Integers, doubles and booleans, spelled by their `description`.
    mutating func number<T: CustomStringConvertible>(_ name: String, _ value: T) {
        key(name)
        text += value.description
    }

    /// `null` for nil.
    mutating func number<T: CustomStringConvertible>(_ name: String, _ value: T?) {
        key(name)
        text += value?.description ?? "null"
    }

    mutating func strings(_ name: String, _ values: [String]) {
        key(name)
        text += "[" + values.map(JSONText.quote).joined(separator: ",") + "]"
    }

    mutating func numbers<T: CustomStringConvertible>(_ name: String, _ values: [T]) {
        key(name)
        text += "[" + values.map(\.description).joined(separator: ",") + "]"
    }

    /// A nested object.
    mutating func object(_ name: String, _ value: some JSONObjectWritable) {
        key(name)
        text += value.json
    }

    /// A nested object, or `null` for nil.
    mutating func object(_ name: String, _ value: (some JSONObjectWritable)?) {
        key(name)
        text += value?.json ?? "null"
    }
}

/// A value written as one JSON object.
protocol JSONObjectWritable {
    func write(to writer: inout JSONObjectWriter)
}

extension JSONObjectWritable {
    var json: String {
        var writer = JSONObjectWriter()
        write(to: &writer)
        return writer.json
    }
}
