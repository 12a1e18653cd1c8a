import ArgumentParser
import Benchmarks
import Catalog
import Foundation
import PreRankServer
import TestWorlds
import TwinTower

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark the scoring kernels and request stages against baselines measured in the same run.",
        discussion: """
        Writes a synthetic random model and its index (F32, F16, I8) under --dir once, then
        measures: the whole index (fused score + fusion + top-K vs a streaming read of the same
        bytes and a naive scalar loop), --candidates random candidates (fresh set per repetition;
        vs a streaming read of as many bytes, the kernel without prefetch, the naive loop), the
        stages of a whole request, and recall@k of F16/I8 against F32. Build in release mode:
        swift build -c release && .build/release/prerank bench
        """
    )

    @Option(parsing: .unconditional, help: "Items in the synthetic index.") var items: Int = 1_000_000
    @Option(parsing: .unconditional, help: "Tasks T.") var tasks: Int = 3
    @Option(parsing: .unconditional, help: "Vector width d.") var d: Int = 64
    @Option(parsing: .unconditional, help: "Random candidates per request.") var candidates: Int = 10_000
    @Option(parsing: .unconditional, help: "Top-K size.") var k: Int = 100
    @Option(help: "Index dtypes, comma-separated (f32,f16,i8).") var dtypes: String = "f32,f16,i8"
    @Option(parsing: .unconditional, help: "Repetitions of whole-index figures.") var repeats: Int = 15
    @Option(parsing: .unconditional, help: "Repetitions of gathered-candidate figures.") var gatherRepeats: Int = 200
    @Option(parsing: .unconditional, help: "Threads for the parallel whole-index figure.") var threads: Int = ScoringOptions.cores
    @Option(help: "Directory for the synthetic model and indexes (reused).") var dir: String = "/tmp/prerank-bench"
    @Flag(help: "Skip the naive scalar baseline.") var noNaive = false
    @Option(help: "Scenarios to run, comma-separated: whole, gather, request, codec (decoder and encoder vs Foundation).") var scenarios: String = "whole,gather,request"
    @Flag(help: "Print the report as JSON.") var json = false
    @Option(help: "How indexes are held: huge_pages (as the server) or mapped.") var residency: String = "huge_pages"
    @Option(help: "Also measure the gather at these prefetch distances, comma-separated (rows ahead).") var prefetchSweep: String = ""

    func run() throws {
        if let problem = BuildInfo.kernelEnvironmentProblem(ProcessInfo.processInfo.environment) { throw CLIError(problem) }
        #if DEBUG
        FileHandle.standardError.write(Data("warning: a debug build; benchmark figures need swift build -c release\n".utf8))
        #endif
        var s = BenchSettings()
        s.items = items
        s.tasks = tasks
        s.d = d
        s.candidates = min(candidates, items)
        s.k = k
        s.repeats = max(1, repeats)
        s.gatherRepeats = max(2, gatherRepeats)
        s.threads = max(1, threads)
        s.directory = dir
        s.naive = !noNaive
        guard let r = ItemIndex.Residency(rawValue: residency) else { throw CLIError("--residency takes huge_pages or mapped, not \(residency)") }
        s.residency = r
        s.prefetchSweep = try prefetchSweep.split(separator: ",").map { part in
            guard let v = Int(part.trimmingCharacters(in: .whitespaces)), (0...4096).contains(v) else {
                throw CLIError("--prefetch-sweep takes distances from 0 to 4096, not \(part)")
            }
            return v
        }
        s.scenarios = Set(scenarios.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        s.dtypes = try dtypes.split(separator: ",").map { part in
            guard let t = IndexDType(rawValue: part.trimmingCharacters(in: .whitespaces).lowercased()) else {
                throw CLIError("--dtypes takes f32, f16 and i8, not \(part)")
            }
            return t
        }
        guard items >= 1, tasks >= 1, d >= 1, k >= 1, candidates >= 1 else { throw CLIError("sizes must be at least 1") }
        let report: BenchReport
        do {
            report = try ScoringBenchmark.run(s) { FileHandle.standardError.write(Data(("# " + $0 + "\n").utf8)) }
        } catch {
            throw CLIError(error.description)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        print("prerank bench: N = \(report.items), T = \(report.tasks), d = \(report.d), candidates = \(report.candidates), k = \(report.k), \(report.cores) cores, kernel = \(report.kernel)")
        print("measured \(ISO8601DateFormatter().string(from: Date())) on \(Self.machine())")
        print("| scenario | dtype | figure | p50 ms | min ms | GB/s | vs baseline (p50 ratio) | value |")
        print("|---|---|---|---:|---:|---:|---|---:|")
        for f in report.figures {
            let p50 = f.p50Ms > 0 ? fmt(f.p50Ms, 3) : ""
            let mn = f.minMs > 0 ? fmt(f.minMs, 3) : ""
            let gb = f.gbPerS.map { fmt($0, 1) } ?? ""
            let ratio = f.ratio.map { "\(fmt($0, 2))× of \(f.baseline ?? "")" } ?? ""
            let value = f.value.map { fmt($0, 4) } ?? ""
            let note = f.note.map { " (\($0))" } ?? ""
            print("| \(f.scenario) | \(f.dtype) | \(f.name)\(note) | \(p50) | \(mn) | \(gb) | \(ratio) | \(value) |")
        }
    }

    private func fmt(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }

    /// CPU model and load average, so a figure pasted into the docs says where it came from.
    static func machine() -> String {
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "" } ?? "unknown CPU"
        let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
        return "\(cpu), load average \(load)"
    }
}
