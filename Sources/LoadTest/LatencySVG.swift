import Foundation

/// An SVG plot of latency percentiles (log scale) against offered rate, with the p99 budget and
/// the knee marked. Self-contained: no fonts or scripts beyond SVG text.
public enum LatencySVG {
    public static func render(_ report: LoadTestReport) -> String {
        let steps = report.steps.sorted { $0.offeredRate < $1.offeredRate }
        let w = 760.0, h = 440.0, left = 70.0, right = 150.0, top = 30.0, bottom = 50.0
        let pw = w - left - right, ph = h - top - bottom
        let rates = steps.map(\.offeredRate)
        let minRate = 0.0, maxRate = max(rates.max() ?? 1, 1) * 1.05
        let values = steps.flatMap { [$0.p50Ms, $0.p90Ms, $0.p99Ms, $0.p999Ms] }.filter { $0 > 0 } + [report.p99BudgetMs ?? 1]
        let lo = pow(10, floor(log10(max(values.min() ?? 0.1, 0.01))))
        let hi = pow(10, ceil(log10(max(values.max() ?? 10, lo * 10))))
        func x(_ r: Double) -> Double { left + (r - minRate) / (maxRate - minRate) * pw }
        func y(_ v: Double) -> Double { top + ph - (log10(max(v, lo)) - log10(lo)) / (log10(hi) - log10(lo)) * ph }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(f(left))\" y=\"18\" font-size=\"14\">prerank loadtest: latency vs offered rate (\(report.url))</text>\n"
        // Axes and grid.
        s += "<line x1=\"\(f(left))\" y1=\"\(f(top + ph))\" x2=\"\(f(left + pw))\" y2=\"\(f(top + ph))\" stroke=\"black\"/>\n"
        s += "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + ph))\" stroke=\"black\"/>\n"
        var decade = lo
        while decade <= hi * 1.0001 {
            s += "<line x1=\"\(f(left))\" y1=\"\(f(y(decade)))\" x2=\"\(f(left + pw))\" y2=\"\(f(y(decade)))\" stroke=\"#ddd\"/>\n"
            s += "<text x=\"\(f(left - 6))\" y=\"\(f(y(decade) + 4))\" text-anchor=\"end\">\(decade < 1 ? String(format: "%g", decade) : String(Int(decade))) ms</text>\n"
            decade *= 10
        }
        for i in 0...5 {
            let r = maxRate * Double(i) / 5
            s += "<text x=\"\(f(x(r)))\" y=\"\(f(top + ph + 18))\" text-anchor=\"middle\">\(Int(r))</text>\n"
        }
        s += "<text x=\"\(f(left + pw / 2))\" y=\"\(f(h - 10))\" text-anchor=\"middle\">offered rate (requests/s)</text>\n"
        // Budget and knee.
        if let budget = report.p99BudgetMs {
            s += "<line x1=\"\(f(left))\" y1=\"\(f(y(budget)))\" x2=\"\(f(left + pw))\" y2=\"\(f(y(budget)))\" stroke=\"red\" stroke-dasharray=\"6,4\"/>\n"
            s += "<text x=\"\(f(left + pw + 6))\" y=\"\(f(y(budget) + 4))\" fill=\"red\">p99 budget \(f(budget)) ms</text>\n"
        }
        if let knee = report.kneeRate {
            s += "<line x1=\"\(f(x(knee)))\" y1=\"\(f(top))\" x2=\"\(f(x(knee)))\" y2=\"\(f(top + ph))\" stroke=\"gray\" stroke-dasharray=\"2,3\"/>\n"
            s += "<text x=\"\(f(x(knee) + 4))\" y=\"\(f(top + 12))\" fill=\"gray\">knee \(Int(knee))/s</text>\n"
        }
        // Series.
        let series: [(String, String, (LoadStepResult) -> Double)] = [
            ("p50", "#1f77b4", { $0.p50Ms }), ("p90", "#2ca02c", { $0.p90Ms }),
            ("p99", "#d62728", { $0.p99Ms }), ("p99.9", "#9467bd", { $0.p999Ms }),
        ]
        for (i, (name, color, value)) in series.enumerated() {
            let points = steps.filter { value($0) > 0 }.map { "\(f(x($0.offeredRate))),\(f(y(value($0))))" }
            if !points.isEmpty {
                s += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(points.joined(separator: " "))\"/>\n"
                for p in points {
                    let xy = p.split(separator: ",")
                    s += "<circle cx=\"\(xy[0])\" cy=\"\(xy[1])\" r=\"3\" fill=\"\(color)\"/>\n"
                }
            }
            let ly = top + 20 + Double(i) * 18
            s += "<line x1=\"\(f(left + pw + 6))\" y1=\"\(f(ly + 40))\" x2=\"\(f(left + pw + 26))\" y2=\"\(f(ly + 40))\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
            s += "<text x=\"\(f(left + pw + 30))\" y=\"\(f(ly + 44))\">\(name)</text>\n"
        }
        s += "</svg>\n"
        return s
    }
}
