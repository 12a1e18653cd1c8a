@testable import HTTPTransport

/// `gzip`: `Gzip.inflate` under a size limit and a budget. Input: bytes 0-1 the limit, byte 2
/// the budget in 4 KiB units (0: none), the rest is the stream. Checks: the output never
/// exceeds the limit; what the budget granted covers the output; a failure is one of the three
/// named ones; and an accepted stream round-trips (deflate then inflate gives it back).
enum GzipTarget {
    static let name = "gzip"

    static func run(_ data: UnsafeRawBufferPointer) {
        var r = FuzzReader(data)
        let limit = r.u16() * 16
        let budgetUnits = Int(r.byte())
        let input = r.rest()
        var granted = 0
        let budget = budgetUnits == 0 ? Int.max : budgetUnits * 4096
        do throws(Gzip.Failure) {
            let out = try Gzip.inflate(input, limit: limit) { n in
                guard granted + n <= budget else { return false }
                granted += n
                return true
            }
            require(out.count <= limit, name, "inflated \(out.count) bytes past the limit \(limit)")
            require(out.count <= granted || out.isEmpty, name, "kept \(out.count) bytes, the budget granted \(granted)")
            guard let packed = Gzip.deflate(out) else { FuzzFailure.fail(name, "deflate failed") }
            let back = try Gzip.inflate(packed, limit: max(limit, out.count))
            require(back == out, name, "deflate/inflate does not round-trip")
        } catch {
            require(granted <= budget, name, "the budget granted \(granted) past \(budget)")
        }
    }
}
