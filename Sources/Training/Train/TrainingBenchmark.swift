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
    /// Rows timed per repeat.
    public var rowsPerRepeat: Int
    public var repeats: Int
}

/// Training throughput for a model size and a data file: the encode pass once, then the same
/// rows trained with the two sides of each step on one thread and on two, alternating, so the
/// ratio of the two is measured under the same machine load.
public enum TrainingBenchmark {
    public static func run(features: FeaturesFile, data: String, config: TrainingConfig, rowsPerRepeat: Int,
                           repeats: Int, log: (String) -> Void) throws(FormatError) -> TrainingBenchmarkReport {
        var all = config
        all.validationFraction = 0  // every row is timed
        all.idWarmupEpochs = 0  // time the steady state: id rows read (or dropped to the OOV row)
        let started = Date()
        let (spec, rows) = try TrainingSession.encode(features: features, data: data, config: all)
        let encodeRate = Double(rows.train.count) / max(Date().timeIntervalSince(started), 1e-9)
        log(String(format: "encode: %d rows, %.0f rows/s", rows.train.count, encodeRate))

        var best = [1: 0.0, 2: 0.0]
        for r in 1...max(1, repeats) {
            for threads in [1, 2] {
                var c = all
                c.threads = threads
                var session = TrainingSession(spec: spec, rows: rows, config: c)
                _ = session.runEpoch(0, limit: 4 * config.batch)  // warm-up: first touches of tables and mapping
                let (_, rate) = session.runEpoch(r, limit: rowsPerRepeat)
                best[threads] = max(best[threads] ?? 0, rate)
                log(String(format: "repeat %d, %d thread%@: %.0f rows/s", r, threads, threads == 1 ? "" : "s", rate))
            }
        }
        return TrainingBenchmarkReport(rows: rows.train.count, encodeRowsPerSecond: encodeRate,
                                       stepRowsPerSecondOneThread: best[1] ?? 0, stepRowsPerSecondTwoThreads: best[2] ?? 0,
                                       rowsPerRepeat: min(rowsPerRepeat, rows.train.count), repeats: max(1, repeats))
    }
}
