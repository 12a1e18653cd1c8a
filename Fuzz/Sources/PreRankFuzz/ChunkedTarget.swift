@testable import HTTPTransport

/// `chunked`: `ChunkedDecoder` on a body split at fuzzer-chosen read boundaries.
///
/// Input: byte 0 seeds the read sizes, bytes 1-2 the body limit, the rest is the chunked body.
/// Checks: the outcome does not depend on how the input was split; the body stays within the
/// limit; a `feed` appends at most the `room` it was given (what the connection has reserved
/// in the memory budget; the split run grants fuzzer-chosen room, from `dataBytes(in:)` down
/// to one byte, and feeds the rest after `.needRoom`); and what the decoder accepts, the RFC 9112 grammar
/// (`ReferenceChunked`) accepts too, with the same body and length.
enum ChunkedTarget {
    static let name = "chunked"

    enum Outcome: Equatable {
        case needMore
        case done(used: Int)
        case failure(status: Int)
    }

    static func run(_ data: UnsafeRawBufferPointer) {
        var r = FuzzReader(data)
        let seed = Int(r.byte())
        let maxBody = r.u16()
        let input = r.rest()

        let whole = decode(input, maxBody: maxBody, sizes: { _ in input.count }, rooms: { _ in .max })
        let split = decode(input, maxBody: maxBody, sizes: { k in readSize(seed: seed, k: k) },
                           rooms: { k in readSize(seed: seed &+ 77, k: k) })
        require(whole.outcome == split.outcome && whole.body == split.body, name,
                "the outcome depends on read boundaries: whole \(whole.outcome), split \(split.outcome)")

        guard case .done(let used) = whole.outcome else { return }
        let accepted = Array(input[0..<used])
        if let reference = ReferenceChunked.decode(accepted) {
            require(reference.body == whole.body && reference.used == used, name,
                    "the reference decoder reads \(reference.used) bytes / \(reference.body.count) body bytes, the decoder \(used) / \(whole.body.count)")
        } else {
            Known.check(false, Known.chunkGrammar, name, "the decoder accepted \(used) bytes that RFC 9112's chunked grammar refuses")
        }
    }

    /// Read sizes 1…64 and a few larger ones, from a seed (the same seed gives the same splits).
    static func readSize(seed: Int, k: Int) -> Int {
        let h = (seed &+ 1) &* 2_654_435_761 &+ k &* 40503
        let v = (h >> 7) & 0xFF
        return v < 200 ? 1 + v % 16 : 1 + v * 7
    }

    /// Decodes `input` in reads of `sizes(k)` bytes, each feed given `rooms(k)` bytes of room
    /// (at most what `dataBytes(in:)` asks for, at least one).
    static func decode(_ input: [UInt8], maxBody: Int, sizes: (Int) -> Int, rooms: (Int) -> Int) -> (outcome: Outcome, body: [UInt8]) {
        var decoder = ChunkedDecoder(maxBody: maxBody)
        var body: [UInt8] = []
        var offset = 0
        var k = 0
        while offset < input.count {
            let n = min(max(1, sizes(k)), input.count - offset)
            k += 1
            let room = max(1, min(decoder.dataBytes(in: n), rooms(k - 1)))
            let before = body.count
            let step = input.withUnsafeBytes { decoder.feed(UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + n)]), into: &body, room: room) }
            Known.check(body.count - before <= room, Known.chunkReservation, name,
                        "one feed of \(n) bytes with room \(room) appended \(body.count - before) data bytes")
            require(body.count <= maxBody, name, "body of \(body.count) bytes past the limit \(maxBody)")
            require(decoder.bodyCount == body.count, name, "bodyCount \(decoder.bodyCount) != appended \(body.count)")
            switch step {
            case .needMore:
                offset += n
            case .needRoom(let used):
                require(used >= 0 && used < n && body.count - before == room, name,
                        "needRoom(used: \(used)) of a \(n)-byte feed after appending \(body.count - before) of room \(room)")
                offset += used
            case .done(let used):
                require(used >= 0 && used <= n, name, "done(used: \(used)) of a \(n)-byte feed")
                require(decoder.isDone, name, "done without isDone")
                return (.done(used: offset + used), body)
            case .failure(let f):
                require([400, 413, 431].contains(f.status), name, "unexpected status \(f.status)")
                return (.failure(status: f.status), body)
            }
        }
        return (.needMore, body)
    }
}
