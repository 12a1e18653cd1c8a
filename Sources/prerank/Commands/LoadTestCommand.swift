import ArgumentParser
import Foundation
import LoadTest

struct LoadTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadtest",
        abstract: "Open-loop constant-rate HTTP load against a local prerank server.",
        discussion: """
        Requests are scheduled at a constant rate; latency runs from each request's scheduled send
        time (no coordinated omission) and is summarised with HdrHistogram. Requests go over a
        pool of keep-alive connections (--connections), opening more up to --max-connections when
        none is free. Bodies come from --requests (JSON lines, one body per line) or are generated
        with --model DIR --index FILE [--candidates 10000]. --sweep raises the rate step by step
        until p99 exceeds --p99-target (or errors exceed --max-error-rate, or throughput falls
        behind), reports the knee, and confirms at --confirm-fraction of it. Each sweep rate runs
        --repeats times (3) and passes only if every run does; the knee is reported with its spread
        (the failed rate above it, the p99 range of its runs). Exit status 1 when nothing answered,
        when a fixed-rate run's errors exceed --max-error-rate (1 %), or when no sweep rate passed.
        Only 127.0.0.1 / localhost / ::1 are allowed unless --allow-remote.

        Examples:
          prerank loadtest --url http://127.0.0.1:8080/prerank --model demo/model --index demo/index.safetensors --rate 500 --duration 20
          prerank loadtest --requests bodies.jsonl --sweep --rate 200 --p99-target 15 --svg sweep.svg --json
        """
    )

    @Option(help: "Target URL (http://host:port/path).") var url: String = "http://127.0.0.1:8080/prerank"
    @Option(parsing: .unconditional, help: "Requests per second (the first rate of a sweep).") var rate: Double = 100
    @Option(parsing: .unconditional, help: "Seconds per step.") var duration: Double = 10
    @Option(parsing: .unconditional, help: "Seconds of unrecorded warm-up before each step.") var warmup: Double = 1
    @Option(parsing: .unconditional, help: "Keep-alive connections opened at the start.") var connections: Int = 8
    @Option(parsing: .unconditional, help: "Most connections (more are opened when a request finds none free).") var maxConnections: Int = 64
    @Option(parsing: .unconditional, help: "Per-request timeout, milliseconds.") var timeoutMs: Int = 10_000

    @Option(help: "JSON-lines file of request bodies.") var requests: String?
    @Flag(help: "Generate bodies from --model and --index (implied by --model).") var generate = false
    @Option(help: "Model directory (for generated bodies).") var model: String?
    @Option(help: "Index file (candidate ids for generated bodies).") var index: String?
    @Option(parsing: .unconditional, help: "Candidates per generated body.") var candidates: Int = 10_000
    @Option(parsing: .unconditional, help: "Distinct generated bodies (cycled).") var bodies: Int = 200
    @Option(parsing: .unconditional, help: "k for generated bodies (default: the server's).") var k: Int?
    @Option(parsing: .unconditional, help: "Random seed for generated bodies.") var seed: UInt64 = 1
    @Option(help: "Also write the generated bodies to this JSON-lines file.") var writeRequests: String?

    @Flag(help: "Raise the rate until p99 passes the target; report the knee.") var sweep = false
    @Option(help: "p99 budget for --sweep, milliseconds.") var p99Target: Double = 150
    @Option(parsing: .unconditional, help: "Sweep: multiply the rate by this each step.") var stepFactor: Double = 1.25
    @Option(parsing: .unconditional, help: "Sweep: add this many requests/s each step instead.") var step: Double = 0
    @Option(parsing: .unconditional, help: "Sweep: highest rate to try.") var maxRate: Double = 100_000
    @Option(parsing: .unconditional, help: "Highest error rate (non-2xx and failures / scheduled) that still passes a sweep step; above it a fixed-rate run exits 1.") var maxErrorRate: Double = 0.01
    @Option(parsing: .unconditional, help: "Sweep: runs of each rate; a rate passes only if all pass.") var repeats: Int = 3
    @Option(parsing: .unconditional, help: "Sweep: confirm at this fraction of the knee (0 to skip).") var confirmFraction: Double = 0.8

    @Flag(help: "Print the report as JSON.") var json = false
    @Option(help: "Write a latency-vs-rate SVG plot here.") var svg: String?
    @Flag(help: "Allow a target other than this machine.") var allowRemote = false

    func validate() throws {
        guard rate > 0, duration > 0, warmup >= 0 else { throw ValidationError("--rate and --duration must be positive") }
        guard connections >= 1, maxConnections >= connections else { throw ValidationError("need 1 <= --connections <= --max-connections") }
        guard repeats >= 1, maxErrorRate >= 0 else { throw ValidationError("--repeats must be at least 1 and --max-error-rate at least 0") }
        guard timeoutMs >= 1, candidates >= 1, bodies >= 1 else { throw ValidationError("--timeout-ms, --candidates and --bodies must be at least 1") }
        if requests != nil && (model != nil || index != nil || generate) {
            throw ValidationError("give either --requests FILE or --model DIR --index FILE, not both")
        }
        if requests == nil && (model == nil || index == nil) {
            throw ValidationError("give --requests FILE, or --model DIR --index FILE to generate bodies")
        }
    }

    func run() throws {
        let target: LoadTarget
        let source: RequestSource
        do {
            target = try LoadTarget.parse(url, allowRemote: allowRemote)
            if let requests {
                source = try RequestSource.jsonLines(path: requests)
            } else {
                guard let model, let index else { throw LoadTestError("generated bodies need --model DIR and --index FILE") }
                source = try RequestSource.generated(modelDirectory: model, indexPath: index, candidates: candidates,
                                                     count: bodies, k: k, seed: seed)
                if let writeRequests {
                    var data = Data()
                    for b in source.bodies { data.append(contentsOf: b); data.append(UInt8(ascii: "\n")) }
                    try data.write(to: URL(fileURLWithPath: writeRequests))
                }
            }
        } catch let e as LoadTestError {
            throw CLIError(e.message)
        }

        func makeStep(_ r: Double) -> LoadStepResult {
            var s = LoadStep(rate: r, duration: duration)
            s.warmup = warmup
            s.connections = connections
            s.maxConnections = maxConnections
            s.timeoutMs = timeoutMs
            return OpenLoopRunner(target: target, source: source, step: s).run()
        }
        func log(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
        log("# loadtest \(url): \(source.bodies.count) bodies, \(connections)–\(maxConnections) connections, \(duration) s per step")

        var report = LoadTestReport(url: url, bodies: source.bodies.count, p99BudgetMs: sweep ? p99Target : nil, steps: [])
        if sweep {
            var plan = SweepPlan(startRate: rate)
            plan.factor = stepFactor
            plan.increment = step
            plan.maxRate = maxRate
            plan.p99BudgetMs = p99Target
            plan.maxErrorRate = maxErrorRate
            plan.confirmFraction = confirmFraction
            plan.repeats = repeats
            let out = RateSweep.run(plan: plan, makeStep: makeStep) { r, pass, repetition in
                log("# \(Self.line(r)) run \(repetition)/\(repeats) \(pass ? "pass" : "FAIL")")
            }
            RateSweep.fill(&report, from: out, repeats: repeats)
        } else {
            let r = makeStep(rate)
            log("# \(Self.line(r))")
            report.steps = [r]
        }
        if let svg {
            do {
                try LatencySVG.render(report).write(toFile: svg, atomically: true, encoding: .utf8)
            } catch {
                throw CLIError("cannot write \(svg): \(error.localizedDescription)")
            }
        }
        let failure = LoadVerdict.failure(report, sweep: sweep, maxErrorRate: maxErrorRate)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            if let failure { throw CLIError(failure) }
            return
        }
        print("latency of 2xx answers; non-2xx responses have their own p50/p99 (a fast 503 is not an answer)")
        print("| offered req/s | achieved 2xx/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | non-2xx p50 / p99 ms | connections |")
        print("|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
        for r in report.steps + (report.confirm.map { [$0] } ?? []) {
            let refused = r.refusedP50Ms.map { "\(Self.f($0)) / \(Self.f(r.refusedP99Ms ?? 0))" } ?? "—"
            print("| \(Self.f(r.offeredRate, 0)) | \(Self.f(r.achievedRate, 0)) | \(Self.f(r.p50Ms)) | \(Self.f(r.p90Ms)) | \(Self.f(r.p99Ms)) | \(Self.f(r.p999Ms)) | \(Self.f(r.maxMs)) | \(Self.errors(r)) | \(refused) | \(r.connections) |")
        }
        if sweep {
            if let knee = report.kneeRate {
                let upper = report.kneeUpperRate.map { ", below \(Self.f($0, 0)) req/s (failed)" } ?? " (no rate up to --max-rate failed)"
                let p99 = "p99 \(Self.f(report.kneeP99MinMs ?? 0))–\(Self.f(report.kneeP99MaxMs ?? 0)) ms over \(repeats) runs"
                print("knee: \(Self.f(knee, 0)) req/s\(upper); \(p99), each <= \(Self.f(p99Target)) ms" +
                      (report.confirm.map { "; at \(Int(confirmFraction * 100)) % (\(Self.f($0.offeredRate, 0)) req/s): p99 \(Self.f($0.p99Ms)) ms" } ?? ""))
            } else {
                print("knee: none — the first rate (\(Self.f(rate, 0)) req/s) already failed")
            }
        }
        if let failure { throw CLIError(failure) }
    }

    static func f(_ v: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", v) }
    static func errors(_ r: LoadStepResult) -> String {
        r.errors.isEmpty ? "0" : r.errors.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
    }
    static func line(_ r: LoadStepResult) -> String {
        "rate \(f(r.offeredRate, 0))/s achieved \(f(r.achievedRate, 0))/s p50 \(f(r.p50Ms)) p90 \(f(r.p90Ms)) p99 \(f(r.p99Ms)) p99.9 \(f(r.p999Ms)) max \(f(r.maxMs)) ms errors \(errors(r)) connections \(r.connections)"
    }
}
