import ArgumentParser
import Foundation
import Training

/// `prerank generate`: writes a synthetic progressive click → cart → order world (SPEC §3, §4).
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Write a synthetic progressive (click → cart → order) dataset.",
        discussion: """
            Writes features.yaml, items.csv, train.csv and test.csv into --out. Users with latent \
            tastes issue queries; each request shows --candidates items (mostly of the query's \
            category); click, add-to-cart and order are drawn from logits that share a latent \
            match signal plus stage-specific effects (price sensitivity, rating, delivery region). \
            Intercepts are calibrated so that CTR ≈ 8 %, cart ≈ 0.8 %, CTCVR ≈ 0.2 % per impression. \
            train.csv/test.csv also hold `relevance` (0–3) and the true probabilities \
            `truth_click`, `truth_cart`, `truth_order` for diagnosis; they are not features. \
            The same options and --seed give byte-identical files. See docs/GENERATOR.md.
            """
    )

    @Option(help: ArgumentHelp("Output directory (created if missing).", valueName: "dir"))
    var out: String

    @Option(parsing: .unconditional, help: "Number of users.")
    var users: Int = 5_000

    @Option(parsing: .unconditional, help: "Number of catalog items.")
    var items: Int = 20_000

    @Option(parsing: .unconditional, help: "Number of distinct queries.")
    var queries: Int = 2_000

    @Option(parsing: .unconditional, help: "Number of requests (one user, one query each).")
    var requests: Int = 20_000

    @Option(parsing: .unconditional, help: "Impressions per request (distinct items; at most --items).")
    var candidates: Int = 50

    @Option(parsing: .unconditional, help: "Master random seed.")
    var seed: UInt64 = 1

    @Option(parsing: .unconditional, help: "Share of requests (split by request_id) written to test.csv.")
    var testFraction: Double = 0.2

    @Option(parsing: .unconditional, help: "Number of item/query categories (capped by --items and --queries).")
    var categories: Int = 40

    @Flag(help: "No progress or summary on stderr.")
    var quiet = false

    var worldConfig: WorldConfig {
        var c = WorldConfig(users: users, items: items, queries: queries, requests: requests,
                            candidates: candidates, seed: seed, testFraction: testFraction)
        c.categories = categories
        return c
    }

    func validate() throws {
        do {
            try worldConfig.validate()
        } catch let error as SyntheticError {
            throw ValidationError(error.message)
        }
    }

    func run() throws {
        let config = worldConfig
        let quiet = self.quiet
        if !quiet {
            Self.log("generate: \(config.users) users, \(config.items) items, \(config.queries) queries, \(config.requests) requests × \(config.candidates) candidates = \(config.impressions) impressions, seed \(config.seed) → \(out)")
        }
        do {
            let report = try SyntheticDataset.generate(config: config, to: out) { p in
                guard !quiet else { return }
                let rate = p.seconds > 0 ? Double(p.rows) / p.seconds : 0
                Self.log(String(format: "generate: %d/%d requests, %d rows, %.0f rows/s",
                                p.requestsDone, p.requestsTotal, p.rows, rate))
            }
            if !quiet {
                for line in report.summaryLines { Self.log("generate: " + line) }
            }
        } catch let error as SyntheticError {
            throw GenerateFailure(error.message)
        }
    }

    static func log(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

/// A failure after argument parsing (I/O), printed by ArgumentParser as `Error: <message>` (exit 1).
private struct GenerateFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
