import Foundation
import Testing
@testable import Catalog
import TwinTower

@Suite struct ItemIndexTests {
    func writeIndex(ids: [Int64], vectors: [Float], t: Int, d: Int, dtype: IndexDType) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ix-\(UUID().uuidString).st").path
        _ = try IndexBuilder.write(ids: ids, vectors: vectors, taskNames: (0..<t).map { "t\($0)" }, d: d, dtype: dtype,
                                   fingerprint: "fp", modelVersion: "v", output: path)
        return path
    }

    @Test(arguments: [true, false])
    func idTableFindsEveryIdAndNothingElse(contiguous: Bool) {
        let ids: [Int64] = contiguous ? Array(100..<1100) : (0..<1000).map { Int64($0) * 7 - 3000 }
        let table = ids.withUnsafeBufferPointer { IDTable(ids: $0) }
        for (row, id) in ids.enumerated() { #expect(table.row(of: id) == Int32(row)) }
        for probe: Int64 in [99, 1100, -1, Int64.max, Int64.min, 1] where !ids.contains(probe) {
            #expect(table.row(of: probe) == -1)
        }
    }

    /// SIMD kernels equal the scalar reference for every dtype and awkward widths (tails).
    @Test(arguments: [IndexDType.f32, .f16, .i8], [1, 7, 8, 15, 16, 33, 64])
    func kernelsMatchScalarReference(dtype: IndexDType, d: Int) throws {
        var rng = SplitMix64(seed: UInt64(d))
        let n = 50, t = 3
        let vectors = (0..<(n * t * d)).map { _ in Float.random(in: -1...1, using: &rng) }
        let path = try writeIndex(ids: (0..<n).map { Int64($0 * 3) }, vectors: vectors, t: t, d: d, dtype: dtype)
        let index = try ItemIndex(path: path)
        let chain = LogitChain(architecture: Architecture(hidden: [], d: d, fr: true, lr: true, clamp: true, chain: .additive),
                               headBias: [-1, -0.5, -2])
        let user = (0..<(t * d)).map { _ in Float.random(in: -1...1, using: &rng) }
        let rows: [Int32] = [4, 0, 49, 17, 17]
        var out = [Float](repeating: 0, count: rows.count * t)
        user.withUnsafeBufferPointer { u in
            out.withUnsafeMutableBufferPointer { o in
                // I8 widened to F32: the path this reference describes. The default integer path
                // (user vector quantised per request) is held to its own error bound in
                // Int8KernelTests, far above 1e-5.
                index.probabilities(user: u.baseAddress!, rows: rows, count: rows.count, chain: chain,
                                    tuning: KernelTuning(i8Integer: false), into: o.baseAddress!)
            }
        }
        for (i, r) in rows.enumerated() {
            let expected = index.scalarReference(user: user, row: Int(r), chain: chain)
            for k in 0..<t { #expect(abs(out[i * t + k] - expected[k]) < 1e-5) }
        }
        // Dequantised vectors stay close to the originals.
        let tolerance: Float = dtype == .f32 ? 0 : dtype == .f16 ? 1e-3 : 1.0 / 127
        for r in [0, 13, 49] {
            for k in 0..<t {
                let v = index.vector(row: r, task: k)
                for j in 0..<d { #expect(abs(v[j] - vectors[(r * t + k) * d + j]) <= tolerance) }
            }
        }
    }

    @Test func fingerprintMustMatchTheModel() throws {
        var rng = SplitMix64(seed: 1)
        let spec = ModelSpec(version: "x", tasks: [.init(name: "ctr", label: "click")],
                             architecture: Architecture(hidden: [], d: 2, fr: false, lr: false, clamp: false, chain: .additive),
                             features: [.init(name: "i", side: .item, kind: .categorical, buckets: 3, dim: 2)])
        var model = ModelStore.random(spec: spec, using: &rng)
        model.fingerprint = "abc"
        let path = try writeIndex(ids: [1, 2], vectors: [1, 2, 3, 4], t: 1, d: 2, dtype: .f32)
        #expect(throws: FormatError.self) { try ItemIndex(path: path, model: model) }
    }

    /// An index whose `ids` start at an odd offset (a header of odd length), so the loader reads
    /// them from an aligned copy; `ids` out of order must be named with the values in the file.
    /// Regression (fuzz target `safetensors`): the message was built after the copy was freed,
    /// a use-after-free that printed whatever the allocator had written there.
    @Test(arguments: [([5, 5], "duplicate id 5 at rows 0 and 1"), ([7, 3], "ids are not ascending at row 1 (7 then 3)")])
    func unorderedIdsAreNamedFromAMisalignedTable(ids: [Int64], message: String) throws {
        var header = #"{"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},"vectors":{"dtype":"F32","shape":[2,1,1],"data_offsets":[16,24]}}"#
        if header.utf8.count % 2 == 0 { header += " " }
        var bytes: [UInt8] = []
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { bytes += $0 }
        bytes += Array(header.utf8)
        for id in ids { withUnsafeBytes(of: id.littleEndian) { bytes += $0 } }
        for v: Float in [1, 2] { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ix-\(UUID().uuidString).st").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: FormatError(path, message)) { try ItemIndex(path: path) }
    }
}
