import Foundation
import Testing
import TwinTower
@testable import Training

@Suite("Synth RNG and tables")
struct SynthRNGTests {
    @Test func splitMix64MatchesReference() {
        // Reference SplitMix64 with state 0 (Vigna's splitmix64.c): first outputs.
        var rng = SplitMix64(seed: 0)
        #expect(rng.next() == 0xE220_A839_7B1D_CDAF)
        #expect(rng.next() == 0x6E78_9E6A_A1B9_65F4)
    }

    @Test func streamsAreIndependentAndReproducible() {
        var a = SplitMix64(seed: 42, stream: 3, index: 5)
        var b = SplitMix64(seed: 42, stream: 3, index: 5)
        var c = SplitMix64(seed: 42, stream: 3, index: 6)
        let xa = (0..<4).map { _ in a.next() }
        #expect(xa == (0..<4).map { _ in b.next() })
        #expect(xa != (0..<4).map { _ in c.next() })
    }

    @Test func drawsHaveTheRightRangeAndMoments() {
        var rng = SplitMix64(seed: 9)
        var sum = 0.0, sumSq = 0.0
        let n = 20_000
        for _ in 0..<n {
            let d = rng.nextDouble()
            #expect(d >= 0 && d < 1)
            let k = rng.nextInt(below: 7)
            #expect((0..<7).contains(k))
            let g = rng.nextGaussian()
            sum += g; sumSq += g * g
        }
        #expect(abs(sum / Double(n)) < 0.05)
        #expect(abs(sumSq / Double(n) - 1) < 0.05)
    }

    @Test func aliasTableFollowsWeights() {
        let table = AliasTable(weights: [1, 0, 3, 6])
        var rng = SplitMix64(seed: 3)
        var counts = [0, 0, 0, 0]
        let n = 40_000
        for _ in 0..<n { counts[table.sample(&rng)] += 1 }
        #expect(counts[1] == 0)
        for (j, w) in [0.1, 0.0, 0.3, 0.6].enumerated() {
            #expect(abs(Double(counts[j]) / Double(n) - w) < 0.01)
        }
    }
}

@Suite("Synth CSV writer")
struct SynthCSVWriterTests {
    @Test func escapesOnlyWhenNeeded() {
        #expect(CSVWriter.escape("plain") == "plain")
        #expect(CSVWriter.escape("a,b") == "\"a,b\"")
        #expect(CSVWriter.escape("say \"hi\"") == "\"say \"\"hi\"\"\"")
        #expect(CSVWriter.escape("two\nlines") == "\"two\nlines\"")
        #expect(CSVWriter.joinMulti(["red", "shoes"]) == "red|shoes")
        #expect(CSVWriter.joinMulti(["a,b", "c"]) == "\"a,b|c\"")
    }

    /// Writes cells through the writer and reads them back.
    private func roundTrip(_ write: (CSVWriter) -> Void) throws -> String {
        let dir = SynthSupport.tempDirectory("csv")
        defer { SynthSupport.remove(dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/t.csv"
        let w = try CSVWriter(path: path, bufferCapacity: 4096)   // small buffer: exercises flushes
        write(w)
        try w.close()
        return try String(contentsOfFile: path, encoding: .utf8)
    }

    @Test func rowsRoundTripThroughAnRFC4180Reader() throws {
        let rows = [["id", "terms", "note"], ["1", "red|shoes", "a,b"], ["2", "", "he said \"x\""], ["3", "x", "multi\nline"]]
        let text = try roundTrip { w in for _ in 0..<200 { for r in rows { w.writeRow(r) } } }
        let parsed = SynthSupport.parseCSV(text)
        #expect(parsed.count == 800)
        for (j, r) in parsed.enumerated() { #expect(r == rows[j % 4]) }
    }

    @Test func significantDigitsFormatting() throws {
        let cases: [(Double, String)] = [
            (0, "0"), (1, "1"), (0.08, "0.08"), (0.0812345678, "0.08123457"), (0.5, "0.5"),
            (1.2345678e-7, "1.234568e-07"), (0.000099999999, "0.0001"), (9.9999999e-6, "0.00001"),
            (0.00001256552, "0.00001256552"), (5.138708e-06, "5.138708e-06"), (3e-21, "3e-21"),
            (0.99999999, "1"), (12.5, "12.5"),
        ]
        let text = try roundTrip { w in
            for (v, _) in cases { w.appendSignificant(v, digits: 7); w.endRow() }
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        #expect(lines == cases.map(\.1))
    }

    @Test func significantDigitsAreAccurateAndMonotone() throws {
        var rng = SplitMix64(seed: 11)
        let values = (0..<5_000).map { _ in Foundation.pow(10, -12 * rng.nextDouble()) * rng.nextDouble() }.sorted()
        let text = try roundTrip { w in for v in values { w.appendSignificant(v, digits: 7); w.endRow() } }
        let parsed = text.split(separator: "\n").map { Double($0)! }
        #expect(parsed.count == values.count)
        for (v, p) in zip(values, parsed) { #expect(abs(p - v) <= 5e-7 * v) }
        for j in 1..<parsed.count { #expect(parsed[j - 1] <= parsed[j]) }
    }

    @Test func fixedAndIntegerFormatting() throws {
        let text = try roundTrip { w in
            w.appendInt(0); w.comma(); w.appendInt(-42); w.comma(); w.appendInt(1_234_567); w.comma()
            w.appendFixed(0.125, decimals: 2); w.comma(); w.appendFixed(3, decimals: 1); w.comma(); w.appendFixed(0.0000004, decimals: 6)
            w.endRow()
        }
        #expect(text == "0,-42,1234567,0.13,3.0,0.000000\n")
    }
}

@Suite("Synth config and schema")
struct SynthConfigTests {
    @Test func badOptionsAreRejectedWithAReason() {
        func message(_ edit: (inout WorldConfig) -> Void) -> String? {
            var c = WorldConfig()
            edit(&c)
            do { try c.validate(); return nil } catch let e as SyntheticError { return e.message } catch { return "\(error)" }
        }
        #expect(message { _ in } == nil)
        #expect(message { $0.users = 0 }?.contains("--users") == true)
        #expect(message { $0.items = -1 }?.contains("--items") == true)
        #expect(message { $0.requests = 0 }?.contains("--requests") == true)
        #expect(message { $0.candidates = 0 }?.contains("--candidates") == true)
        #expect(message { $0.items = 10; $0.candidates = 11 }?.contains("--candidates") == true)
        #expect(message { $0.testFraction = 1.5 }?.contains("--test-fraction") == true)
        #expect(message { $0.targetCTCVR = 0.5 } != nil)
        for m in [message { $0.users = 0 }, message { $0.testFraction = -1 }] {
            #expect(m?.contains("\n") == false)
        }
    }

    @Test func bucketsArePrimesWithoutCollisionsForSmallVocabularies() {
        let values = ["new", "regular", "silver", "gold", "vip"]
        let b = SyntheticSchema.buckets(field: "segment", values: values)
        #expect(SyntheticSchema.isPrime(b) && b >= 10)
        let rows = Set(values.map { SyntheticSchema.fnv1a64("segment\u{1F}" + $0) % UInt64(b) })
        #expect(rows.count == values.count)
        #expect(SyntheticSchema.nextPrime(atLeast: 10_000) == 10_007)
        // SPEC §3 hash: FNV-1a 64 reference value of the empty string is the offset basis.
        #expect(SyntheticSchema.fnv1a64("") == 14_695_981_039_346_656_037)
        #expect(SyntheticSchema.fnv1a64("a") == 0xAF63_DC4C_8601_EC8C)
    }

    @Test func yamlScalarsAreQuotedWhenNeeded() {
        #expect(FeaturesYAML.scalar("user_id") == "user_id")
        #expect(FeaturesYAML.scalar("yes") == "\"yes\"")
        #expect(FeaturesYAML.scalar("a: b") == "\"a: b\"")
        #expect(FeaturesYAML.scalar("1x") == "\"1x\"")
    }
}
