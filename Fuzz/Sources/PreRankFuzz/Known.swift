import Glibc

/// The checks of the findings the fuzzer made (each has a regression input under
/// Fuzz/regressions/ and a line in docs/FUZZING.md; all four are fixed). By default every check
/// is on, so a regression reports under its finding's id; `PRERANK_FUZZ_TOLERATE=id,id` turns the named
/// checks off, so a campaign can look past a finding for new ones.
enum Known {
    /// `http`: the work to scan a head grows faster than linearly in the bytes received (finding
    /// 1: blank lines before the request line were rescanned from byte 0 on every read).
    static let headQuadratic = "head-quadratic"
    /// `http`: bytes received before a complete head (blank lines) not held to a limit (finding 2).
    static let headBuffer = "head-buffer"
    /// `chunked`: one `feed` appends more data bytes than its `room` (finding 3: before
    /// `feed(room:)`, more than `dataBytes(in:)` promised), so a body outgrows its reservation.
    static let chunkReservation = "chunk-reservation"
    /// `chunked`: the decoder accepts chunk extensions or trailer lines RFC 9112's grammar
    /// refuses (finding 4).
    static let chunkGrammar = "chunk-grammar"

    static let tolerated: Set<String> = {
        guard let raw = getenv("PRERANK_FUZZ_TOLERATE") else { return [] }
        return Set(String(cString: raw).split(separator: ",").map { String($0) })
    }()

    /// Fails with `message` unless check `id` is tolerated.
    static func check(_ ok: Bool, _ id: String, _ target: String, _ message: @autoclosure () -> String) {
        if !ok && !tolerated.contains(id) { FuzzFailure.fail(target, "[\(id)] \(message())") }
    }
}

/// Fails with `message` when `ok` is false (an invariant with no known exception).
func require(_ ok: Bool, _ target: String, _ message: @autoclosure () -> String) {
    if !ok { FuzzFailure.fail(target, message()) }
}
