import Foundation
import PreRankServer
import StrictJSON
import TwinTower

// Shared by the codec tests: a Codable mirror of the /prerank schema (what JSONDecoder makes of
// a body) and a generator of random valid bodies written in many textual forms.

/// The /prerank body as `JSONDecoder` reads it; the reference for differential tests.
struct MirrorRequest: Decodable {
    var request_id: MirrorID?
    var user: [String: MirrorFeature]?
    var query: [String: MirrorFeature]?
    var candidates: [Int64]?
    var relevance: [Double]?
    var k: Int?
    var fusion: MirrorFusion?
    var debug: Bool?

    var request: PreRankRequest {
        var r = PreRankRequest(requestID: request_id?.text, user: (user ?? [:]).mapValues(\.value),
                               query: (query ?? [:]).mapValues(\.value), candidates: candidates, relevance: relevance,
                               k: k, fusion: fusion.map { FusionOverride(alpha: $0.alpha, beta: $0.beta, gamma: $0.gamma) },
                               debug: debug ?? false)
        r.requestIDIsInteger = request_id?.isInteger ?? false
        return r
    }
}

struct MirrorID: Decodable {
    var text: String
    var isInteger = false
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { text = s } else { text = String(try c.decode(Int64.self)); isInteger = true }
    }
}

struct MirrorFusion: Decodable {
    var alpha: Double?
    var beta: Double?
    var gamma: Double?
}

struct MirrorFeature: Decodable {
    var value: FeatureValue
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { value = .null }
        else if let b = try? c.decode(Bool.self) { value = .bool(b) }
        else if let i = try? c.decode(Int64.self) { value = .integer(i) }
        else if let d = try? c.decode(Double.self) { value = .number(d) }
        else if let s = try? c.decode(String.self) { value = .string(s) }
        else { value = .array(try c.decode([MirrorFeature].self).map(\.value)) }
    }
}

/// Any JSON value; `JSONDecoder` into this answers "is this valid JSON at all".
indirect enum AnyJSON: Decodable {
    case null, bool(Bool), number(Double), string(String), array([AnyJSON]), object([String: AnyJSON])
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([AnyJSON].self) { self = .array(a) }
        else { self = .object(try c.decode([String: AnyJSON].self)) }
    }
}

func decodeResult(_ text: String) -> Result<PreRankRequest, APIError> {
    do throws(APIError) { return .success(try RequestDecoder.decode(Array(text.utf8))) } catch { return .failure(error) }
}

func decodeResult(_ bytes: [UInt8]) -> Result<PreRankRequest, APIError> {
    do throws(APIError) { return .success(try RequestDecoder.decode(bytes)) } catch { return .failure(error) }
}

/// Writes random valid /prerank bodies: random key order, whitespace, escapes, unicode,
/// number spellings.
struct BodyGenerator {
    var rng: SplitMix64

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    mutating func int(_ r: ClosedRange<Int>) -> Int { Int.random(in: r, using: &rng) }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }

    mutating func ws() -> String {
        guard chance(0.3) else { return "" }
        let pool = [" ", "\n", "\t", "\r\n", "  "]
        return (0..<int(1...3)).map { _ in pool[int(0...pool.count - 1)] }.joined()
    }

    /// A random string and a JSON spelling of it (raw UTF-8, short escapes or \u escapes).
    mutating func string() -> (value: String, json: String) {
        let pool: [Unicode.Scalar] = ["a", "b", "z", "0", "-", " ", "\"", "\\", "/", "\n", "\t", "\u{1}", "\u{1F}", "\u{7F}",
                                      "é", "ß", "中", "\u{FFFD}", "\u{FEFF}", "😀", "𝄞", "\u{10FFFF}", "\u{E000}"]
        var value = ""
        var json = "\""
        for _ in 0..<int(0...12) {
            let sc = pool[int(0...pool.count - 1)]
            value.unicodeScalars.append(sc)
            let forceEscape = chance(0.25)
            switch sc {
            case "\"": json += "\\\""
            case "\\": json += "\\\\"
            case "/": json += chance(0.5) ? "\\/" : "/"
            case "\n": json += chance(0.5) ? "\\n" : "\\u000a"
            case "\t": json += chance(0.5) ? "\\t" : "\\u0009"
            default:
                if sc.value < 0x20 || forceEscape {
                    json += Self.uEscape(sc, upper: chance(0.5))
                } else {
                    json.unicodeScalars.append(sc)
                }
            }
        }
        return (value, json + "\"")
    }

    static func uEscape(_ sc: Unicode.Scalar, upper: Bool) -> String {
        func hex(_ v: UInt32) -> String {
            let h = String(v, radix: 16, uppercase: upper)
            return "\\u" + String(repeating: "0", count: 4 - h.count) + h
        }
        if sc.value < 0x10000 { return hex(sc.value) }
        let v = sc.value - 0x10000
        return hex(0xD800 + (v >> 10)) + hex(0xDC00 + (v & 0x3FF))
    }

    /// A non-integral finite Double and a JSON spelling of it (so JSONDecoder's Int64 attempt
    /// cannot claim it).
    mutating func fraction() -> (value: Double, json: String) {
        while true {
            let d: Double
            switch int(0...3) {
            case 0: d = Double(bitPattern: rng.next())
            case 1: d = Double.random(in: -1000...1000, using: &rng)
            case 2: d = Double(int(-99999...99999)) / 64
            default: d = Double(int(1...9)) * 1e-7
            }
            guard d.isFinite, d != d.rounded() else { continue }
            return (d, spell(d))
        }
    }

    /// Spellings JSON allows for one Double: Swift's shortest form, `e`/`E` variants.
    mutating func spell(_ d: Double) -> String {
        var s = d.description
        if s.hasSuffix(".0") && chance(0.5) { s.removeLast(2) }
        if chance(0.3) { s = s.replacingOccurrences(of: "e", with: "E") }
        if chance(0.2) && !s.contains("e") && !s.contains("E") { s += "e0" }
        return s
    }

    mutating func integer() -> Int64 {
        switch int(0...3) {
        case 0: return Int64(bitPattern: rng.next())
        case 1: return [Int64.max, .min, 0, -1, 1 << 53, -(1 << 53) - 1][int(0...5)]
        default: return Int64(int(-1000...100_000_000))
        }
    }

    mutating func scalar() -> (value: FeatureValue, json: String) {
        switch int(0...6) {
        case 0, 1: let s = string(); return (.string(s.value), s.json)
        case 2: let i = integer(); return (.integer(i), String(i))
        case 3: let f = fraction(); return (.number(f.value), f.json)
        case 4: let b = chance(0.5); return (.bool(b), b ? "true" : "false")
        case 5: return (.null, "null")
        default:
            // Out of Int64 range: a number, not an integer.
            let digits = (chance(0.5) ? "-" : "") + "9" + String(repeating: "0", count: int(19...25))
            return (.number(Double(digits) ?? 0), digits)
        }
    }

    mutating func features() -> (value: [String: FeatureValue], json: String) {
        var map: [String: FeatureValue] = [:]
        var parts: [String] = []
        for _ in 0..<int(0...6) {
            let name = string()
            guard map[name.value] == nil else { continue }
            let v: (value: FeatureValue, json: String)
            if chance(0.3) {
                let items = (0..<int(0...4)).map { _ in scalar() }
                v = (.array(items.map(\.value)), "[" + ws() + items.map(\.json).joined(separator: ws() + "," + ws()) + ws() + "]")
            } else {
                v = scalar()
            }
            map[name.value] = v.value
            parts.append(ws() + name.json + ws() + ":" + ws() + v.json + ws())
        }
        return (map, "{" + parts.joined(separator: ",") + ws() + "}")
    }

    /// Any JSON value for an unknown key (nested, with every token type).
    mutating func anyValue(depth: Int = 0) -> String {
        switch depth > 3 ? int(0...3) : int(0...5) {
        case 0: return string().json
        case 1: return fraction().json
        case 2: return ["true", "false", "null", "-0", "0"][int(0...4)]
        case 3: return String(integer())
        case 4: return "[" + (0..<int(0...3)).map { _ in ws() + anyValue(depth: depth + 1) + ws() }.joined(separator: ",") + "]"
        default:
            return "{" + (0..<int(0...3)).map { i in ws() + "\"k\(i)\"" + ws() + ":" + ws() + anyValue(depth: depth + 1) }.joined(separator: ",") + ws() + "}"
        }
    }

    /// A random valid body and the request it means.
    mutating func body(candidates count: Int? = nil) -> (request: PreRankRequest, json: String) {
        var r = PreRankRequest()
        var members: [String] = []
        if chance(0.8) {
            if chance(0.7) { let s = string(); r.requestID = s.value; members.append("\"request_id\":" + ws() + s.json) }
            else { let i = integer(); r.requestID = String(i); r.requestIDIsInteger = true; members.append("\"request_id\":" + ws() + String(i)) }
        }
        if chance(0.8) { let f = features(); r.user = f.value; members.append("\"user\":" + ws() + f.json) }
        if chance(0.8) { let f = features(); r.query = f.value; members.append("\"query\":" + ws() + f.json) }
        if count != nil || chance(0.9) {
            let ids = (0..<(count ?? int(0...40))).map { _ in integer() }
            r.candidates = ids
            members.append("\"candidates\":" + ws() + "[" + ids.map { ws() + String($0) + ws() }.joined(separator: ",") + "]")
            if chance(0.5) {
                var levels: [Double] = []
                var spelled: [String] = []
                for _ in ids {
                    switch int(0...2) {
                    case 0: let l = int(0...3); levels.append(Double(l)); spelled.append(String(l))
                    case 1: let l = Double.random(in: 0...3, using: &rng); levels.append(l); spelled.append(spell(l))
                    default: levels.append(2.5); spelled.append(["2.5", "25e-1", "0.25E1", "2.50"][int(0...3)])
                    }
                }
                r.relevance = levels
                members.append("\"relevance\":" + ws() + "[" + spelled.map { ws() + $0 + ws() }.joined(separator: ",") + "]")
            }
        }
        if chance(0.5) { let k = int(1...1_000_000); r.k = k; members.append("\"k\":" + ws() + String(k)) }
        if chance(0.5) {
            var o = FusionOverride()
            var parts: [String] = []
            for name in ["alpha", "beta", "gamma"].shuffled(using: &rng) where chance(0.7) {
                let v: Double = chance(0.5) ? fraction().value : Double(int(-5...50))
                switch name {
                case "alpha": o.alpha = v
                case "beta": o.beta = v
                default: o.gamma = v
                }
                parts.append(ws() + "\"\(name)\"" + ws() + ":" + ws() + spell(v))
            }
            r.fusion = o
            members.append("\"fusion\":" + ws() + "{" + parts.joined(separator: ",") + ws() + "}")
        }
        if chance(0.5) { r.debug = chance(0.5); members.append("\"debug\":" + ws() + (r.debug ? "true" : "false")) }
        // Unknown keys are refused now (unknown_field); CodecRequestDecoderTests.hostileInputs
        // covers them, nested values included.
        members.shuffle(using: &rng)
        let json = ws() + "{" + members.map { ws() + $0 + ws() }.joined(separator: ",") + ws() + "}" + ws()
        return (r, json)
    }
}
