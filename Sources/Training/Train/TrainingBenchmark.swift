import Foundation
import TwinTower

/// What `prerank bench-train` measured, all in one run on the same encoded rows.
public struct TrainingBenchmarkReport: Sendable, Codable {
    /// Rows in the training file (after the validation split).
    public var rows: Int
    /// The one-time pass over the CSV: parse, validate, hash, write encoded rows.
    public var encodeRowsPerSecond: Double
    /// Training steps (assemble + forward + loss + backward + Adam), best of the repeats.
    public var stepRowsPerSecondOneThread: Double
    public var stepRowsPerSecondTwoThreads: Double
    /// With a weight column: the same steps, two threads, on rows encoded with their weights
    /// (`--weight-column`), timed in the same rounds as the unweighted ones. nil without one.
    public var stepRowsPerSecondWeighted: Double? = nil
    /// Rows timed per repeat.
    public var rowsPerRepeat: Int
    public var repeats: Int
}

/// Training throughput for a model size and a data file: the encode pass once, then the same
/// rows trained with the two sides of each step on one thread and on two, alternating, so the
/// ratio of the two is measured under the same machine load.
public enum TrainingBenchmark {
    /// With `weightColumn`, the rows are encoded a second time with their weights and each round
    /// also times two-thread steps on those.
    public static func run(features: FeaturesFile, data: String, config: TrainingConfig, rowsPerRepeat: Int,
                           repeats: Int, weightColumn: String? = nil, log: (String) -> Void) throws(FormatError) -> TrainingBenchmarkReport {
        var all = config
        all.validationFraction = 0  // every row is timed
        all.idWarmupEpochs = 0  // time the steady state: id rows read (or dropped to the OOV row)
        let started = Date()
        let (spec, rows) = try TrainingSession.encode(features: features, data: data, config: all)
        let encodeRate = Double(rows.train.count) / max(Date().timeIntervalSince(started), 1e-9)
        log(String(format: "encode: %d rows, %.0f rows/s", rows.train.count, encodeRate))
        var weighted: (config: TrainingConfig, rows: TrainingData)? = nil
        if let weightColumn {
            var c = all
            c.weightColumn = weightColumn
            c.threads = 2
            let (_, w) = try TrainingSession.encode(features: features, data: data, config: c)
            weighted = (c, w)
        }

        // Keys: 1 and 2 threads; 3 is two threads on weighted rows.
        var best = [1: 0.0, 2: 0.0, 3: 0.0]
        for r in 1...max(1, repeats) {
            for run in weighted == nil ? [1, 2] : [1, 2, 3] {
                var c = all
                c.threads = min(run, 2)
                var session = run == 3 ? TrainingSession(spec: spec, rows: weighted!.rows, config: weighted!.config)
                                       : TrainingSession(spec: spec, rows: rows, config: c)
                _ = session.runEpoch(0, limit: 4 * config.batch)  // warm-up: first touches of tables and mapping
                let (_, rate) = session.runEpoch(r, limit: rowsPerRepeat)
                best[run] = max(best[run] ?? 0, rate)
                log(String(format: "repeat %d, %d thread%@%@: %.0f rows/s", r, min(run, 2), run == 1 ? "" : "s",
                           run == 3 ? ", weighted (\(weightColumn ?? ""))" : "", rate))
            }
        }
        var report = TrainingBenchmarkReport(rows: rows.train.count, encodeRowsPerSecond: encodeRate,
                                             stepRowsPerSecondOneThread: best[1] ?? 0, stepRowsPerSecondTwoThreads: best[2] ?? 0,
                                             rowsPerRepeat: min(rowsPerRepeat, rows.train.count), repeats: max(1, repeats))
        if weighted != nil { report.stepRowsPerSecondWeighted = best[3] }
        return report
    }
}
