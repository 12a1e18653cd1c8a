import Glibc

/// Findings that are known and owned elsewhere (each has a regression input under
/// Fuzz/regressions/ and a line in docs/FUZZING.md). By default every check is on, so a target
/// reports a known finding again until it is fixed; `PRERANK_FUZZ_TOLERATE=id,id` turns the named
/// checks off, so a campaign can look past a finding for new ones.
enum Known {
    /// `http`: the work to scan a head grows faster than linearly in the bytes received (blank
    /// lines before the request line are rescanned from byte 0 on every read).
    static let headQuadratic = "head-quadratic"
    /// `http`: bytes received before a complete head (blank lines) are not held to a limit.
    static let headBuffer = "head-buffer"
    /// `chunked`, `http`: one `feed` appends more data bytes than `dataBytes(in:)` promised (the
    /// chunk decoder reports the current chunk only), so a body outgrows its reservation.
    static let chunkReservation = "chunk-reservation"
    /// `chunked`: chunk extensions and trailer lines are not checked against RFC 9112's grammar.
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
