import ArgumentParser
import Foundation
import Training
import TwinTower

struct BenchTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-train",
        abstract: "Benchmark training throughput (rows/s) on a training file, one and two threads in the same run.",
        discussion: """
            Encodes --data once (timed), then trains the same rows with the user and item sides of
            each step on one thread and on two, alternating for --repeats rounds, and prints the
            best rate of each and their ratio. Build in release mode. Example:
              prerank generate --out /tmp/w --quiet
              prerank bench-train --features /tmp/w/features.yaml --data /tmp/w/train.csv
            """
    )

    @Option(help: "features.yaml (tasks and features).") var features: String
    @Option(help: "Training CSV.") var data: String
    @Option(help: "resflow, nse, nse+fr, nse+lr or esmm.") var arch: String = "resflow"
    @Option(help: "Hidden widths, comma-separated.") var hidden: String = "64,32"
    @Option(parsing: .unconditional, help: "Output width d.") var d: Int = 32
    @Option(parsing: .unconditional, help: "Mini-batch size.") var batch: Int = 512
    @Option(parsing: .unconditional, help: "Rows timed per repeat.") var rows: Int = 200_000
    @Option(parsing: .unconditional, help: "Rounds (each times one and two threads).") var repeats: Int = 3
    @Option(help: "Also time two-thread steps with this column as --weight-column (same rounds).") var weightColumn: String?
    @Flag(help: "Print the report as JSON.") var json = false

    func run() throws {
        #if DEBUG
        FileHandle.standardError.write(Data("warning: a debug build; benchmark figures need swift build -c release\n".utf8))
        #endif
        let widths = try hidden.split(separator: ",").map { part -> Int in
            guard let w = Int(part.trimmingCharacters(in: .whitespaces)), w >= 1 else { throw CLIError("--hidden must be positive integers") }
            return w
        }
        guard d >= 1, batch >= 1, rows >= 1, repeats >= 1 else { throw CLIError("--d, --batch, --rows and --repeats must be ≥ 1") }
        guard let architecture = Architecture.named(arch, hidden: widths, d: d, clamp: false) else {
            throw CLIError("--arch must be resflow, nse, nse+fr, nse+lr or esmm, not \(arch)")
        }
        var config = TrainingConfig(architecture: architecture)
        config.batch = batch
        let report: TrainingBenchmarkReport
        do {
            report = try TrainingBenchmark.run(features: try FeaturesFile.load(path: features), data: data, config: config,
                                               rowsPerRepeat: rows, repeats: repeats,
                                               weightColumn: weightColumn) { Progress.line("# " + $0, final: true) }
        } catch {
            throw CLIError(error.description)  // the do block throws only FormatError
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        let one = report.stepRowsPerSecondOneThread, two = report.stepRowsPerSecondTwoThreads
        print(String(format: "encode pass (once per training run)   %9.0f rows/s", report.encodeRowsPerSecond))
        print(String(format: "training steps, 1 thread              %9.0f rows/s", one))
        print(String(format: "training steps, 2 threads             %9.0f rows/s   (%.2fx of 1 thread)", two, two / max(one, 1e-9)))
        if let w = report.stepRowsPerSecondWeighted {
            print(String(format: "training steps, 2 threads, weighted   %9.0f rows/s   (%.2fx of unweighted)", w, w / max(two, 1e-9)))
        }
        print(String(format: "aim 50,000 rows/s: %@ (%.2fx of the aim)", two >= 50_000 ? "met" : "missed", two / 50_000))
    }
}
