import Foundation
import Testing
@testable import TwinTower

@Suite struct SafetensorsTests {
    func tempPath(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tt-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name).path
    }

    @Test func roundTripKeepsValuesAndAlignsEveryTensor() throws {
        let path = tempPath("a.safetensors")
        let entries = [
            TensorEntry("scales", shape: [3], .f32([1, 2, 3])),
            TensorEntry("q", shape: [5], .i8([1, -2, 3, -4, 5])),
            TensorEntry("ids", shape: [3], .i64([7, 8, 9])),
            TensorEntry("h", shape: [2], .f16([1.5, -2.25])),
        ]
        try SafetensorsWriter.write(entries, metadata: ["k": "v \"quoted\""], to: path)
        let file = try SafetensorsFile(path: path)
        #expect(file.dataStart % 64 == 0)
        #expect(file.metadata["k"] == "v \"quoted\"")
        #expect(try file.tensor("ids", dtype: .i64, shape: [3]).int64s() == [7, 8, 9])
        #expect(try file.tensor("scales", dtype: .f32, shape: [3]).floats() == [1, 2, 3])
        for (name, t) in file.tensors {
            let address = Int(bitPattern: t.bytes.baseAddress!)
            #expect(address % t.dtype.size == 0, "tensor \(name) is not naturally aligned")
        }
    }

    @Test func checksNameTheTensor() throws {
        let path = tempPath("b.safetensors")
        try SafetensorsWriter.write([TensorEntry("w", shape: [2, 2], .f32([1, 2, 3, 4]))], to: path)
        let file = try SafetensorsFile(path: path)
        #expect(throws: FormatError(path, "tensor w: shape [2, 2], expected [4]")) { try file.tensor("w", dtype: .f32, shape: [4]) }
        #expect(throws: FormatError(path, "tensor w: dtype F32, expected I64")) { try file.tensor("w", dtype: .i64, shape: [2, 2]) }
        #expect(throws: FormatError(path, "missing tensor v")) { try file.tensor("v", dtype: .f32, shape: [2, 2]) }
    }

    /// Every prefix of a valid file is an error, never a crash or an out-of-bounds read.
    @Test func everyTruncationIsAnError() throws {
        let path = tempPath("c.safetensors")
        try SafetensorsWriter.write([TensorEntry("ids", shape: [4], .i64([1, 2, 3, 4])),
                                     TensorEntry("v", shape: [4, 2], .f32(Array(repeating: 0.5, count: 8)))], to: path)
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        for cut in 0..<bytes.count {
            let prefix = Array(bytes[0..<cut])
            let owner = Box(prefix)
            let parsed = prefix.withUnsafeBytes { raw in Result { () throws(FormatError) in try SafetensorsFile(bytes: raw, owner: owner) } }
            if case .success = parsed { Issue.record("prefix of \(cut) bytes parsed as valid") }
        }
    }

    final class Box { let bytes: [UInt8]; init(_ b: [UInt8]) { bytes = b } }
}
