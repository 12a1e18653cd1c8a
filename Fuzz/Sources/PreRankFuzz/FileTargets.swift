import Catalog
import Foundation
@testable import PreRankServer
import TwinTower

/// `updates`: the update-log reader (`UpdateLog.parse`) on torn and corrupt files.
///
/// Input: byte 0's low bit picks the mode. Raw mode parses the rest as a file. Built mode writes
/// a valid log of up to 8 fuzzer-chosen records, then applies fuzzer-chosen damage: a cut
/// (truncation) and optionally zeros after it, which is what a crash can leave, or byte flips.
/// Checks: records have strictly increasing sequences and lie inside `validEnd`; the valid prefix
/// reads back clean (no tear, same records); with no tear `validEnd` is the file size; and a log
/// that was only cut (plus zeros) is never refused and keeps exactly the records before the cut.
enum UpdatesTarget {
    static let name = "updates"

    static func run(_ data: UnsafeRawBufferPointer) {
        var r = FuzzReader(data)
        let mode = r.byte()
        if mode & 1 == 0 {
            check(r.rest(), tornOnly: nil)
            return
        }
        var file = UpdateLog.magic
        var ends: [(end: Int, sequence: UInt64)] = []
        var sequence: UInt64 = UInt64(r.byte())
        for _ in 0..<Int(r.byte() % 9) {
            sequence += UInt64(r.byte()) + 1
            let payload = r.take(Int(r.byte() % 64))
            file += UpdateLog.encode(sequence: sequence, payload: payload)
            ends.append((file.count, sequence))
        }
        let original = file
        let damage = r.byte() % 4
        let at = r.u16() % (file.count + 1)
        switch damage {
        case 0, 1:
            // A tear: cut at `at`, then (1) zeros, as a file extended but not written leaves. The
            // writer fsyncs the magic before the first record, so zeros follow only a whole magic.
            file.removeSubrange(at...)
            if damage == 1 && at >= UpdateLog.magic.count { file += [UInt8](repeating: 0, count: Int(r.byte())) }
            // The records whose bytes survived (zeros can restore a record whose tail was zeros).
            let kept = ends.prefix { $0.end <= file.count && Array(file[0..<$0.end]) == Array(original[0..<$0.end]) }.map(\.sequence)
            check(file, tornOnly: kept)
        default:
            for _ in 0..<Int(r.byte() % 8) where !file.isEmpty {
                file[r.u16() % file.count] ^= max(1, r.byte())
            }
            check(file, tornOnly: nil)
        }
    }

    /// `tornOnly`: the sequences a torn (cut) log must give, or nil when corruption is allowed.
    static func check(_ file: [UInt8], tornOnly: [UInt64]?) {
        let contents: UpdateLog.Contents
        do throws(UpdateLogError) {
            contents = try UpdateLog.parse(file, path: "fuzz.log")
        } catch {
            require(tornOnly == nil, name, "a log that was only cut is refused: \(error)")
            return
        }
        if let tornOnly {
            require(contents.records.map(\.sequence) == tornOnly, name,
                    "a cut log gives sequences \(contents.records.map(\.sequence)), expected \(tornOnly)")
        }
        require(contents.validEnd <= file.count, name, "validEnd \(contents.validEnd) past the file (\(file.count))")
        if contents.torn == nil { require(contents.validEnd == file.count, name, "no tear but validEnd \(contents.validEnd) < \(file.count)") }
        var last: UInt64?
        for rec in contents.records {
            if let last { require(rec.sequence > last, name, "sequence \(rec.sequence) after \(last)") }
            last = rec.sequence
            let end = rec.offset + UpdateLog.headerBytes + rec.payload.count
            require(rec.offset >= UpdateLog.magic.count && end <= contents.validEnd, name, "record at \(rec.offset) outside the valid bytes")
            require(Array(file[rec.offset..<end]) == UpdateLog.encode(sequence: rec.sequence, payload: rec.payload), name,
                    "record at \(rec.offset) is not what its bytes encode")
        }
        guard contents.validEnd >= UpdateLog.magic.count else { return }
        do throws(UpdateLogError) {
            let again = try UpdateLog.parse(Array(file[0..<contents.validEnd]), path: "fuzz.log")
            require(again.torn == nil && again.records == contents.records, name, "the valid prefix does not read back clean")
        } catch {
            FuzzFailure.fail(name, "the valid prefix of a log is refused: \(error)")
        }
    }
}

/// `safetensors`: the safetensors reader and the two loaders on top of it, the item index
/// (`ItemIndex(path:)`) and the model weights (`ModelStore.assemble`).
///
/// Input: byte 0 picks the loader, the rest is the file. Checks: an accepted file has tensors
/// that tile its data region exactly, each view inside the file and of `shape × dtype` bytes;
/// an accepted index answers `row(of:)` and `vector(row:task:)` for every id (ASan sees any
/// read outside the mapping).
enum SafetensorsTarget {
    static let name = "safetensors"

    /// The spec the weights loader is given (tiny; its seeds in the corpus were written for it).
    static let spec: ModelSpec = {
        let json = #"""
        {"format":"prerank-model/1","version":"fuzz","tasks":[{"name":"ctr","label":"click"}],
         "architecture":{"hidden":[2],"d":2,"fr":false,"lr":true,"clamp":false,"chain":"additive"},
         "features":[{"name":"user_id","side":"user","kind":"categorical","buckets":3,"dim":2},
                     {"name":"price","side":"item","kind":"dense"}]}
        """#
        return try! JSONDecoder().decode(ModelSpec.self, from: Data(json.utf8))
    }()

    static func run(_ data: UnsafeRawBufferPointer) {
        var r = FuzzReader(data)
        let mode = r.byte() % 3
        let file = r.rest()
        switch mode {
        case 0:
            let owner = file as AnyObject
            file.withUnsafeBytes { raw in
                guard let parsed = try? SafetensorsFile(bytes: raw, owner: owner) else { return }
                checkTiling(parsed, raw)
            }
        case 1:
            let path = ScratchFile.write(file, name: "index.safetensors")
            guard let index = try? ItemIndex(path: path) else { return }
            for (row, id) in index.ids.enumerated() {
                require(index.row(of: id) >= 0, name, "id \(id) of row \(row) is not found")
                for k in 0..<index.taskCount { _ = index.vector(row: row, task: k) }
            }
            _ = index.touch()
        default:
            let owner = file as AnyObject
            file.withUnsafeBytes { raw in
                guard let weights = try? SafetensorsFile(bytes: raw, owner: owner) else { return }
                checkTiling(weights, raw)
                _ = try? ModelStore.assemble(spec: spec, weights: weights)
            }
        }
    }

    static func checkTiling(_ f: SafetensorsFile, _ raw: UnsafeRawBufferPointer) {
        let dataSize = raw.count - f.dataStart
        require(f.dataStart >= 8 && f.dataStart <= raw.count, name, "data region starts at \(f.dataStart) of \(raw.count)")
        var total = 0
        for (tname, t) in f.tensors {
            let begin = t.bytes.baseAddress.map { $0 - raw.baseAddress! } ?? f.dataStart
            require(begin >= f.dataStart && begin + t.bytes.count <= raw.count, name, "tensor \(tname) outside the file")
            require(t.bytes.count == t.shape.reduce(1, *) * t.dtype.size, name, "tensor \(tname): \(t.bytes.count) bytes for \(t.shape)")
            total += t.bytes.count
        }
        require(total == dataSize, name, "tensors cover \(total) of \(dataSize) data bytes")
    }
}

/// `model`: the `model.json` loader (`ModelStore.loadSpec`: the spec, its tasks and its feature
/// list). Checks: an accepted spec keeps the rules `validate` states, and written back as JSON
/// it loads again to an equal spec.
enum ModelTarget {
    static let name = "model"

    static func run(_ data: UnsafeRawBufferPointer) {
        let path = ScratchFile.write(Array(data), name: "model.json")
        guard let spec = try? ModelStore.loadSpec(path: path) else { return }
        require(spec.format == ModelSpec.formatTag && !spec.tasks.isEmpty && spec.architecture.d >= 1, name, "an invalid spec was accepted")
        require(Set(spec.tasks.map(\.name)).count == spec.tasks.count, name, "repeated task names accepted")
        require(Set(spec.features.map(\.name)).count == spec.features.count, name, "repeated feature names accepted")
        for f in spec.features where f.kind != .dense {
            require((f.buckets ?? 0) >= 1 && (f.dim ?? 0) >= 1, name, "\(f.name): buckets/dim below 1 accepted")
        }
        guard let encoded = try? JSONEncoder().encode(spec) else { FuzzFailure.fail(name, "an accepted spec cannot be encoded") }
        let again = ScratchFile.write(Array(encoded), name: "model-again.json")
        do throws(FormatError) {
            let reread = try ModelStore.loadSpec(path: again)
            require(reread == spec, name, "the spec changes on a JSON round trip")
        } catch {
            FuzzFailure.fail(name, "the re-encoded spec is refused: \(error)")
        }
    }
}

/// `config`: the config YAML loader (`ConfigLoader.parse`, Yams' parser under it). Checks: no
/// trap on any text, and a refusal says what is wrong.
enum ConfigTarget {
    static let name = "config"

    static func run(_ data: UnsafeRawBufferPointer) {
        guard let text = String(validating: Array(data), as: UTF8.self) else { return }
        do throws(ConfigError) {
            _ = try ConfigLoader.parse(yaml: text)
        } catch {
            require(!error.description.isEmpty, name, "an error without a message")
        }
    }
}
