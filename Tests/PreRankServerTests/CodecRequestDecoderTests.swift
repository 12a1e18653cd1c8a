import Foundation
import PreRankServer
import StrictJSON
import Testing
import TwinTower

@Suite struct CodecRequestDecoderTests {
    @Test func specExample() throws {
        let body = """
        { "request_id": "r-1",
          "user":  {"user_id": "u42", "segment": "gold", "age": 31.0},
          "query": {"query_terms": ["red", "shoes"], "query_category": "c12"},
          "candidates": [1001, 1002, 1003],
          "relevance": [2, 0, 1],
          "k": 100,
          "fusion": {"alpha": 1.0, "beta": 20.0, "gamma": 0.1},
          "debug": false }
        """
        let r = try decodeResult(body).get()
        #expect(r == PreRankRequest(
            requestID: "r-1",
            user: ["user_id": .string("u42"), "segment": .string("gold"), "age": .number(31)],
            query: ["query_terms": .array([.string("red"), .string("shoes")]), "query_category": .string("c12")],
            candidates: [1001, 1002, 1003], relevance: [2, 0, 1], k: 100,
            fusion: FusionOverride(alpha: 1, beta: 20, gamma: 0.1), debug: false))
    }

    /// Random valid bodies: the decoder gives what the generator meant and what JSONDecoder
    /// gives on a Codable mirror of the schema.
    @Test func differentialAgainstJSONDecoder() throws {
        var gen = BodyGenerator(seed: 20261123)
        for i in 0..<3000 {
            let (expected, json) = gen.body()
            let ours = decodeResult(json)
            guard case .success(let got) = ours else {
                Issue.record("body \(i) refused: \(ours) for \(json)")
                continue
            }
            #expect(got == expected, "body \(i): \(json)")
            let reference = try JSONDecoder().decode(MirrorRequest.self, from: Data(json.utf8)).request
            #expect(got == reference, "body \(i) differs from JSONDecoder: \(json)")
        }
    }

    /// Doubles in every spelling round-trip exactly as JSONDecoder reads them.
    @Test func doublesMatchJSONDecoder() throws {
        var rng = SplitMix64(seed: 7)
        var spellings: [String] = ["0.1", "0.3", "1e-300", "2.2250738585072014e-308", "4.9e-324", "5e-324",
                                   "1.7976931348623157e308", "123456789012345678901234567890", "0.30000000000000004",
                                   "9007199254740993", "9007199254740993.0", "1.00000000000000011102230246251565404236316680908203125",
                                   "-0.0", "-0", "1E+2", "1e-7", "123.456e-3"]
        for _ in 0..<3000 {
            let d = Double(bitPattern: rng.next())
            guard d.isFinite else { continue }
            spellings.append(d.description)
            spellings.append(String(format: "%.17g", d))
            spellings.append(String(format: "%.6e", d))
        }
        for text in spellings {
            let body = "{\"fusion\":{\"alpha\":\(text)}}"
            guard let reference = try? JSONDecoder().decode(MirrorRequest.self, from: Data(body.utf8)).fusion?.alpha else {
                Issue.record("JSONDecoder refuses \(text)")
                continue
            }
            let got = try decodeResult(body).get().fusion?.alpha
            #expect(got?.bitPattern == reference.bitPattern || (got == 0 && reference == 0), "\(text): \(String(describing: got)) vs \(String(describing: reference))")
        }
    }

    func integerID(_ text: String) -> PreRankRequest {
        var r = PreRankRequest(requestID: text)
        r.requestIDIsInteger = true
        return r
    }

    @Test func validEdgeCases() throws {
        let cases: [(String, PreRankRequest)] = [
            ("{}", PreRankRequest()),
            (" \n{ }\r\n\t", PreRankRequest()),
            ("\u{FEFF}{}", PreRankRequest()),
            ("{\"candidates\":[]}", PreRankRequest(candidates: [])),
            ("{\"user\":null,\"k\":null,\"fusion\":null,\"debug\":null,\"request_id\":null,\"relevance\":null}", PreRankRequest()),
            ("{\"candidates\":[9223372036854775807,-9223372036854775808,-0]}", PreRankRequest(candidates: [.max, .min, 0])),
            ("{\"request_id\":-0}", integerID("0")),
            ("{\"request_id\":123}", integerID("123")),
            ("{\"request_id\":123456789012345678901234567890}", integerID("123456789012345678901234567890")),
            ("{\"request_id\":\"\\u0000\\ud83d\\ude00\\/\"}", PreRankRequest(requestID: "\u{0}😀/")),
            ("{\"user\":{\"big\":9223372036854775808,\"neg\":-1e2,\"b\":true,\"n\":null,\"e\":[]}}",
             PreRankRequest(user: ["big": .number(9223372036854775808), "neg": .number(-100), "b": .bool(true), "n": .null, "e": .array([])])),
            ("{\"fusion\":{\"gamma\":null}}", PreRankRequest(fusion: FusionOverride())),
            // Underflow rounds to zero as IEEE 754 says (JSONDecoder refuses it: a known difference).
            ("{\"fusion\":{\"beta\":1e-400,\"gamma\":-1e-400}}", PreRankRequest(fusion: FusionOverride(beta: 0, gamma: 0))),
            ("{\"k\":9223372036854775807}", PreRankRequest(k: Int.max)),
        ]
        for (body, expected) in cases {
            #expect(try decodeResult(body).get() == expected, "\(body)")
        }
    }

    /// The message of an unknown key suggests the nearest known one when it is close.
    @Test func unknownFieldSuggestsTheNearestKey() {
        for (body, hint) in [("{\"candidate\":[1]}", "did you mean \"candidates\""), ("{\"topk\":3}", "did you mean \"k\""),
                             ("{\"Request_ID\":\"a\"}", "did you mean \"request_id\""), ("{\"zzzzzzzzzzzz\":1}", nil)] {
            guard case .failure(let e) = decodeResult(body) else { Issue.record("accepted \(body)"); continue }
            #expect(e.status == 400 && e.code == "unknown_field")
            if let hint { #expect(e.message.contains(hint), "\(e.message)") } else { #expect(!e.message.contains("did you mean")) }
        }
    }

    /// Hostile and malformed bodies: each gives a 400 with the code and field shown.
    @Test func hostileInputs() {
        // (body, code, field, JSONDecoder also refuses it as JSON). JSONDecoder accepts a
        // trailing comma in arrays and objects; RFC 8259 does not, nor does this decoder.
        let cases: [(String, String, String?, Bool)] = [
            ("", "bad_json", nil, true),
            ("   ", "bad_json", nil, true),
            ("[]", "bad_json", nil, false),
            ("null", "bad_json", nil, false),
            ("{", "bad_json", nil, true),
            ("{} x", "bad_json", nil, true),
            ("{}{}", "bad_json", nil, true),
            ("{}\u{0}", "bad_json", nil, true),
            ("{\"a\" 1}", "bad_json", nil, true),
            ("{a:1}", "bad_json", nil, true),
            ("{'a':1}", "bad_json", nil, true),
            ("{\"a\":1,}", "bad_json", nil, false),
            ("{,}", "bad_json", nil, true),
            ("{\"x\":tru}", "bad_json", nil, true),
            ("{\"x\":nul}", "bad_json", nil, true),
            ("{\"x\":True}", "bad_json", nil, true),
            ("{\"x\":+1}", "bad_json", nil, true),
            ("{\"x\":-}", "bad_json", nil, true),
            ("{\"x\":1.e5}", "bad_json", nil, true),
            ("{\"x\":.5}", "bad_json", nil, true),
            ("{\"x\":1e}", "bad_json", nil, true),
            ("{\"x\":1e+}", "bad_json", nil, true),
            ("{\"x\":0x10}", "bad_json", nil, true),
            ("{\"x\":00}", "bad_json", nil, true),
            ("{\"x\":-01}", "bad_json", nil, true),
            ("{\"x\":1e400}", "bad_json", nil, true),
            ("{\"x\":[1,2}", "bad_json", nil, true),
            ("{\"x\":" + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}", "bad_json", nil, false),
            ("{\"x\":" + String(repeating: "[", count: 100_000), "bad_json", nil, true),
            ("{\"candidates\":[1,2,]}", "bad_json", "candidates", false),
            ("{\"candidates\":[01]}", "bad_json", "candidates", true),
            ("{\"candidates\":[-]}", "bad_json", "candidates", true),
            ("{\"candidates\":[1.]}", "bad_json", "candidates", true),
            ("{\"candidates\":[NaN]}", "bad_json", "candidates", true),
            ("{\"candidates\":[1 2]}", "bad_json", "candidates", true),
            ("{\"candidates\":[1, 2.5]}", "bad_field", "candidates[1]", false),
            ("{\"candidates\":[1e3]}", "bad_field", "candidates[0]", false),
            ("{\"candidates\":[9223372036854775808]}", "bad_field", "candidates[0]", false),
            ("{\"candidates\":[-9223372036854775809]}", "bad_field", "candidates[0]", false),
            ("{\"candidates\":[\"1\"]}", "bad_field", "candidates[0]", false),
            ("{\"candidates\":[1,null]}", "bad_field", "candidates[1]", false),
            // A null or misspelt key is refused, not read as "absent" (the whole index, default k).
            ("{\"candidates\":null}", "bad_field", "candidates", false),
            ("{\"candidate\":[1,2]}", "unknown_field", "candidate", false),
            ("{\"topk\":5,\"candidates\":[1]}", "unknown_field", "topk", false),
            ("{\"x\":" + String(repeating: "[", count: 60) + String(repeating: "]", count: 60) + "}", "unknown_field", "x", false),
            ("{\"x\":{\"a\":[1,{\"b\":null}],\"c\":\"\\\"\"},\"y\":-0.5e-3}", "unknown_field", "x", false),
            ("{\"candidates\":[[1]]}", "bad_field", "candidates[0]", false),
            ("{\"candidates\":[true]}", "bad_field", "candidates[0]", false),
            ("{\"candidates\":[1,[}", "bad_json", "candidates", true),
            ("{\"candidates\":1}", "bad_field", "candidates", false),
            ("{\"candidates\":{}}", "bad_field", "candidates", false),
            ("{\"fusion\":{\"alpha\":NaN}}", "bad_json", "fusion", true),
            ("{\"fusion\":{\"alpha\":Infinity}}", "bad_json", "fusion", true),
            ("{\"fusion\":{\"alpha\":-Infinity}}", "bad_json", "fusion", true),
            ("{\"fusion\":{\"alpha\":1e400}}", "bad_field", "fusion.alpha", true),
            ("{\"fusion\":{\"beta\":-1e309}}", "bad_field", "fusion.beta", true),
            ("{\"fusion\":{\"delta\":1}}", "bad_field", "fusion.delta", false),
            ("{\"fusion\":{\"beta\":\"1\"}}", "bad_field", "fusion.beta", false),
            ("{\"fusion\":{\"beta\":1,\"beta\":2}}", "bad_json", "fusion.beta", false),
            ("{\"fusion\":[1]}", "bad_field", "fusion", false),
            ("{\"k\":0}", "bad_field", "k", false),
            ("{\"k\":-1}", "bad_field", "k", false),
            ("{\"k\":1.5}", "bad_field", "k", false),
            ("{\"k\":1e2}", "bad_field", "k", false),
            ("{\"k\":\"5\"}", "bad_field", "k", false),
            ("{\"k\":99999999999999999999}", "bad_field", "k", false),
            ("{\"k\":true}", "bad_field", "k", false),
            ("{\"relevance\":[1],\"candidates\":[1,2]}", "bad_field", "relevance", false),
            ("{\"relevance\":[1]}", "bad_field", "relevance", false),
            ("{\"candidates\":[1],\"relevance\":[4]}", "bad_field", "relevance[0]", false),
            ("{\"candidates\":[1,2],\"relevance\":[1,-0.5]}", "bad_field", "relevance[1]", false),
            ("{\"candidates\":[1],\"relevance\":[\"1\"]}", "bad_field", "relevance[0]", false),
            ("{\"candidates\":[1],\"relevance\":[1e999]}", "bad_field", "relevance[0]", true),
            ("{\"candidates\":[1],\"relevance\":2}", "bad_field", "relevance", false),
            ("{\"debug\":1}", "bad_field", "debug", false),
            ("{\"debug\":\"true\"}", "bad_field", "debug", false),
            ("{\"request_id\":1.5}", "bad_field", "request_id", false),
            ("{\"request_id\":{}}", "bad_field", "request_id", false),
            ("{\"request_id\":[1]}", "bad_field", "request_id", false),
            ("{\"user\":[]}", "bad_field", "user", false),
            ("{\"user\":\"x\"}", "bad_field", "user", false),
            ("{\"user\":{\"age\":{\"x\":1}}}", "bad_field", "user.age", false),
            ("{\"user\":{\"terms\":[\"a\",[\"b\"]]}}", "bad_field", "user.terms[1]", false),
            ("{\"query\":{\"terms\":[\"a\",{}]}}", "bad_field", "query.terms[1]", false),
            ("{\"user\":{\"age\":1e999}}", "bad_field", "user.age", true),
            ("{\"user\":{\"t\":[1,-1e999]}}", "bad_field", "user.t[1]", true),
            ("{\"user\":{\"a\":1,\"a\":2}}", "bad_json", "user.a", false),
            ("{\"user\":{\"a\":1,}}", "bad_json", "user", false),
            ("{\"user\":{\"a\":[1,]}}", "bad_json", "user", false),
            ("{\"user\":{\"age\":{\"x\":1]}}", "bad_json", "user", true),
            ("{\"k\":1,\"k\":2}", "bad_json", "k", false),
            ("{\"zz\":1,\"zz\":2}", "bad_json", "zz", false),
            ("{\"request_id\":\"\u{1}\"}", "bad_json", "request_id", true),
            ("{\"request_id\":\"a\nb\"}", "bad_json", "request_id", true),
            ("{\"request_id\":\"\\ud800\"}", "bad_json", "request_id", true),
            ("{\"request_id\":\"\\udc00\"}", "bad_json", "request_id", true),
            ("{\"request_id\":\"\\ud800\\u0041\"}", "bad_json", "request_id", true),
            ("{\"request_id\":\"\\ud800x\"}", "bad_json", "request_id", true),
            ("{\"request_id\":\"\\x\"}", "bad_json", "request_id", true),
            ("{\"request_id\":\"\\u12\"}", "bad_json", "request_id", true),
            ("{\"request_id\":\"\\u12G4\"}", "bad_json", "request_id", true),
            ("{\"request_id\":\"abc}", "bad_json", "request_id", true),
            ("{\"x\":\"\\ud800\"}", "bad_json", nil, true),
            ("{\"x\":\"\u{1F}\"}", "bad_json", nil, true),
        ]
        for (body, code, field, jsonInvalid) in cases {
            check(Array(body.utf8), code: code, field: field, jsonInvalid: jsonInvalid)
        }
    }

    /// Invalid UTF-8 anywhere (string values, keys, outside strings) is a 400.
    @Test func invalidUTF8() {
        let bad: [[UInt8]] = [[0xFF], [0xC0, 0x80], [0xC1, 0xBF], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
                              [0xF5, 0x80, 0x80, 0x80], [0xE4, 0xB8], [0x80], [0xC3], [0xF0, 0x9F, 0x98]]
        for seq in bad {
            check(Array("{\"request_id\":\"a".utf8) + seq + Array("b\"}".utf8), code: "bad_json", field: "request_id", jsonInvalid: true)
            check(Array("{\"user\":{\"".utf8) + seq + Array("\":1}}".utf8), code: "bad_json", field: "user", jsonInvalid: true)
            check(Array("{\"".utf8) + seq + Array("\":1}".utf8), code: "bad_json", field: nil, jsonInvalid: true)
            check(Array("{\"x\":".utf8) + seq + Array("}".utf8), code: "bad_json", field: nil, jsonInvalid: true)
            // Truncated at the end of the body, inside the sequence.
            check(Array("{\"x\":\"".utf8) + seq, code: "bad_json", field: nil, jsonInvalid: true)
        }
        // Valid multi-byte sequences at every length pass.
        #expect((try? decodeResult(Array("{\"request_id\":\"\u{7F}\u{80}\u{7FF}\u{800}\u{D7FF}\u{E000}\u{FFFF}\u{10000}\u{10FFFF}\"}".utf8)).get().requestID)
                == "\u{7F}\u{80}\u{7FF}\u{800}\u{D7FF}\u{E000}\u{FFFF}\u{10000}\u{10FFFF}")
    }

    @Test func maxCandidates() throws {
        let body = Array("{\"candidates\":[1,2,3]}".utf8)
        #expect(try RequestDecoder.decode(body, maxCandidates: 3).candidates == [1, 2, 3])
        #expect(throws: APIError.badField("candidates", "more candidates than the limit of 2")) {
            try RequestDecoder.decode(body, maxCandidates: 2)
        }
    }

    @Test func errorMessagesGiveTheByteOffset() {
        guard case .failure(let e) = decodeResult("{\"candidates\":[1,2,]}") else { Issue.record("accepted"); return }
        #expect(e.message == "expected a value at byte 19, found ']'")
        guard case .failure(let t) = decodeResult("{\"k\":1") else { Issue.record("accepted"); return }
        #expect(t.message == "unexpected end of body at byte 6, expected ',' or '}'")
    }

    /// Every strict prefix of a valid body is an error, never a crash or a success.
    @Test func everyTruncationIsAnError() {
        var gen = BodyGenerator(seed: 99)
        for _ in 0..<40 {
            let (_, json) = gen.body()
            let bytes = Array(json.utf8)
            // Trailing whitespace after the closing brace still makes a complete body.
            let last = bytes.lastIndex(of: UInt8(ascii: "}")) ?? bytes.count
            for cut in 0..<last {
                let r = decodeResult(Array(bytes[0..<cut]))
                guard case .failure(let e) = r else {
                    Issue.record("prefix of \(cut) bytes accepted: \(json)")
                    break
                }
                #expect(e.status == 400 && e.code == "bad_json")
            }
        }
    }

    /// Random byte mutations of valid bodies: never a crash; a 400 whenever JSONDecoder finds
    /// the text is not JSON; and when both accept, they agree.
    @Test func mutationsNeverCrash() {
        var gen = BodyGenerator(seed: 4242)
        let interesting: [UInt8] = Array("{}[]\",:\\-+.eE0123456789tfnu \u{7F}".utf8) + [0, 0x1F, 0x80, 0xC0, 0xED, 0xFF]
        var refused = 0
        for i in 0..<3000 {
            var bytes = Array(gen.body().json.utf8)
            guard !bytes.isEmpty else { continue }
            for _ in 0..<gen.int(1...3) {
                let at = gen.int(0...bytes.count - 1)
                switch gen.int(0...2) {
                case 0: bytes[at] = interesting[gen.int(0...interesting.count - 1)]
                case 1: bytes.remove(at: at)
                default: bytes.insert(interesting[gen.int(0...interesting.count - 1)], at: at)
                }
            }
            let ours = decodeResult(bytes)
            let valid = (try? JSONDecoder().decode(AnyJSON.self, from: Data(bytes))) != nil
            switch ours {
            case .failure(let e):
                refused += 1
                #expect(e.status == 400)
            case .success(let got):
                #expect(valid, "mutation \(i) accepted but JSONDecoder refuses it: \(String(decoding: bytes, as: UTF8.self))")
                if let reference = try? JSONDecoder().decode(MirrorRequest.self, from: Data(bytes)).request {
                    #expect(got == reference || Self.differsOnlyInIntegralNumbers(got, reference), "mutation \(i): \(String(decoding: bytes, as: UTF8.self))")
                }
            }
        }
        #expect(refused > 1000)
    }

    /// JSONDecoder reads `1.0` or `1e2` as an Int64 feature; the decoder keeps it a number
    /// (FeatureValue: `integer` is a literal without fraction or exponent).
    static func differsOnlyInIntegralNumbers(_ a: PreRankRequest, _ b: PreRankRequest) -> Bool {
        func norm(_ v: FeatureValue) -> FeatureValue {
            switch v {
            case .integer(let i): return .number(Double(i))
            case .array(let a): return .array(a.map(norm))
            default: return v
            }
        }
        var a = a, b = b
        a.user = a.user.mapValues(norm); a.query = a.query.mapValues(norm)
        b.user = b.user.mapValues(norm); b.query = b.query.mapValues(norm)
        return a == b
    }

    private func check(_ body: [UInt8], code: String, field: String?, jsonInvalid: Bool,
                       sourceLocation: SourceLocation = #_sourceLocation) {
        let shown = String(decoding: body.prefix(80), as: UTF8.self)
        switch decodeResult(body) {
        case .success(let r):
            Issue.record("accepted \(shown) as \(r)", sourceLocation: sourceLocation)
        case .failure(let e):
            #expect(e.status == 400 && e.code == code && e.field == field, "\(shown) -> \(e.code) \(e.field ?? "-"): \(e.message)",
                    sourceLocation: sourceLocation)
            #expect(!e.message.isEmpty, sourceLocation: sourceLocation)
        }
        if jsonInvalid {
            #expect((try? JSONDecoder().decode(AnyJSON.self, from: Data(body))) == nil,
                    "JSONDecoder accepts \(shown) as JSON", sourceLocation: sourceLocation)
        }
    }
}
