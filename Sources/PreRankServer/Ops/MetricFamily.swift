import Foundation

/// One metric family of the exposition: its name, type and help, and how to read its samples
/// from a scrape's state. `MetricsRegistry.families` is the table of them; `render` writes any
/// table the same way, so a new metric is one row, and HELP/TYPE cannot disagree with the lines.
struct MetricFamily: Sendable {
    enum Kind: String, Sendable { case counter, gauge, histogram }

    /// One sample line: its label text (`route="/prerank",code="200"`, empty for none) and value.
    struct Sample {
        var labels: String
        var value: String

        init(_ labels: String = "", _ value: some CustomStringConvertible) {
            self.labels = labels
            self.value = value.description
        }
    }

    /// How a family reads its samples. nil leaves the whole family out (HELP and TYPE too): the
    /// update-log and transport families exist only where there is an update log or a transport.
    enum Samples: Sendable {
        case lines(@Sendable (MetricsRegistry.State) -> [Sample]?)
        case histograms(@Sendable (MetricsRegistry.State) -> [(labels: String, histogram: BucketHistogram)])
    }

    var name: String
    var kind: Kind
    var help: String
    var samples: Samples

    init(_ name: String, _ kind: Kind, _ help: String, _ lines: @escaping @Sendable (MetricsRegistry.State) -> [Sample]?) {
        self.name = name
        self.kind = kind
        self.help = help
        self.samples = .lines(lines)
    }

    init(histogram name: String, _ help: String,
         _ histograms: @escaping @Sendable (MetricsRegistry.State) -> [(labels: String, histogram: BucketHistogram)]) {
        self.name = name
        self.kind = .histogram
        self.help = help
        self.samples = .histograms(histograms)
    }

    /// Appends this family's HELP, TYPE and sample lines for `state` (nothing when it has none).
    func render(_ state: MetricsRegistry.State, into out: inout String) {
        switch samples {
        case .lines(let read):
            guard let lines = read(state) else { return }
            header(into: &out)
            for line in lines {
                out += name
                if !line.labels.isEmpty { out += "{\(line.labels)}" }
                out += " \(line.value)\n"
            }
        case .histograms(let read):
            header(into: &out)
            for (labels, h) in read(state) { Self.histogram(name, labels, h, into: &out) }
        }
    }

    private func header(into out: inout String) {
        out += "# HELP \(name) \(help)\n# TYPE \(name) \(kind.rawValue)\n"
    }

    /// Cumulative `_bucket` lines, then `_sum` and `_count`.
    private static func histogram(_ name: String, _ labels: String, _ h: BucketHistogram, into out: inout String) {
        var cumulative: UInt64 = 0
        let sep = labels.isEmpty ? "" : ","
        for (bound, c) in zip(h.bounds, h.counts) {
            cumulative += c
            out += "\(name)_bucket{\(labels)\(sep)le=\"\(format(bound))\"} \(cumulative)\n"
        }
        out += "\(name)_bucket{\(labels)\(sep)le=\"+Inf\"} \(h.count)\n"
        let l = labels.isEmpty ? "" : "{\(labels)}"
        out += "\(name)_sum\(l) \(format(h.sum))\n\(name)_count\(l) \(h.count)\n"
    }

    /// A whole number without a fraction (`1`, not `1.0`); other values as Swift prints them.
    static func format(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }

    /// A label value, escaped as the exposition format requires.
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}
