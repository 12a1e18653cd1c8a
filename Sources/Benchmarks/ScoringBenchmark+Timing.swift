import Catalog
import Dispatch

/// Timing and the figure rows: one clock and one median for every scenario, so figures taken
/// side by side are measured the same way.
extension ScoringBenchmark {
    @inline(__always)
    static func time(_ body: () -> Void) -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
    }

    static func median(_ xs: [Double]) -> Double {
        guard !xs.isEmpty else { return 0 }
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    static func figure(_ scenario: String, _ dtype: IndexDType, _ name: String, _ times: [Double], bytes: Double? = nil,
                       baseline: String? = nil, baseP50: Double? = nil, note: String? = nil) -> BenchFigure {
        figure(scenario, dtype.rawValue, name, times, bytes: bytes, baseline: baseline, baseP50: baseP50, note: note)
    }

    static func figure(_ scenario: String, _ dtype: String, _ name: String, _ times: [Double], bytes: Double? = nil,
                       baseline: String? = nil, baseP50: Double? = nil, note: String? = nil) -> BenchFigure {
        let p50 = median(times)
        return BenchFigure(scenario: scenario, dtype: dtype, name: name, p50Ms: p50, minMs: times.min() ?? 0,
                           baseline: baseline, ratio: baseP50.map { $0 > 0 ? p50 / $0 : 0 },
                           gbPerS: bytes.map { p50 > 0 ? $0 / (p50 * 1e6) : 0 }, value: nil, note: note)
    }
}
