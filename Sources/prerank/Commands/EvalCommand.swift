import ArgumentParser
import Foundation
import Fusion
import Training
import TwinTower

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Per-task AUC / log-loss and list metrics (WR@K, List AUC, NDCG@K) of a model + index on a test file.",
        discussion: """
            Reads test.csv (request_id, user-side fields, item_id, label columns named by the model's
            tasks, optional relevance; other columns are ignored), scores every impression with the
            model's user tower and the item index (the serving path; rows whose item is not in the
            index are skipped and counted), and reports:
              per task   AUC over all impressions (ties averaged) and log-loss (p clipped to [1e-7, 1-1e-7])
              per list   (grouped by request_id, ranked by the fused score, ties by id)
                WR@K     orders in the top K / all orders, summed over requests (the ResFlow paper's eq. 5)
                List AUC AUC of the fused score with order > 0 positive, mean over requests with both classes
                NDCG@K   gain 2^g - 1, g = number of positive labels (click 1, cart 2, order 3), mean over
                         requests with a positive label
            Fusion: --fusion additive:α,β[,γ] or multiplicative:α,β; --formula/--alpha/--beta/--gamma
            override single weights. Default additive:1,20,0.
            """
    )

    @Option(help: "Model directory (model.json + weights.safetensors).") var model: String
    @Option(help: "Item index built from the model.") var index: String
    @Option(help: "Test impressions CSV.") var data: String
    @Option(help: "Fusion: additive:α,β[,γ] or multiplicative:α,β.") var fusion: String?
    @Option(help: "Fusion formula: additive or multiplicative (overrides --fusion).") var formula: String?
    @Option(parsing: .unconditional, help: "CTR weight α (overrides --fusion).") var alpha: Double?
    @Option(parsing: .unconditional, help: "CTCVR weight β (overrides --fusion).") var beta: Double?
    @Option(parsing: .unconditional, help: "Relevance weight γ, additive only (overrides --fusion).") var gamma: Double?
    @Option(parsing: .unconditional, help: "K of WR@K and NDCG@K.") var k: Int = 100
    @Flag(help: "Print JSON (SPEC §4 shape).") var json = false
    @Option(help: "Write request_id,item_id,<task>…,score for every scored impression.") var predictions: String?

    func run() throws {
        guard k >= 1 else { throw CLIError("--k must be at least 1") }
        let policy = try EvalCommand.resolveFusion(fusion: fusion, formula: formula, alpha: alpha, beta: beta, gamma: gamma)
        do {
            let evaluator = try Evaluator(modelDirectory: model, indexPath: index)
            let scored = try evaluator.score(data: data) { Progress.line("eval: \($0) rows read") }
            if !scored.missingUserColumns.isEmpty {
                Progress.line("eval: warning: no column for user fields \(scored.missingUserColumns.joined(separator: ", ")); encoded as missing")
            }
            if scored.unknownItems > 0 {
                Progress.line("eval: \(scored.unknownItems) rows skipped: item_id not in the index")
            }
            guard scored.rows > 0 else { throw CLIError("\(data): no row with an item in the index") }
            let longest = scored.longestList
            if k >= longest {
                Progress.line("eval: warning: --k \(k) ≥ the longest list (\(longest) candidates): WR@\(k) is 1 and NDCG@\(k) ranks whole lists whatever the model; pass --k below \(longest)", final: true)
            }
            if let predictions { try scored.writePredictions(to: predictions, fusion: policy) }
            let report = Evaluator.evaluate(scored, fusion: policy, k: k)
            // An undefined figure is null in the report; say why on stderr, so a null is not
            // mistaken for a bug (one class of labels missing from the rows).
            for task in report.tasks where task.auc == nil || task.logLoss == nil {
                Progress.line("eval: warning: task \(task.name) has \(task.positives) positive rows of \(scored.rows); AUC/log-loss undefined (null)", final: true)
            }
            print(json ? report.json() : report.table())
        } catch let e as FormatError {
            throw CLIError(e.description)
        }
    }

    static func resolveFusion(fusion: String?, formula: String?, alpha: Double?, beta: Double?, gamma: Double?) throws -> FusionPolicy {
        var policy = FusionPolicy()
        if let fusion {
            do { policy = try FusionText.parse(fusion) } catch { throw CLIError(error.description) }
        }
        if let formula {
            guard let f = FusionFormula(rawValue: formula.lowercased()) else {
                throw CLIError("--formula must be additive or multiplicative, not \(formula)")
            }
            if f != policy.formula && fusion == nil && gamma == nil { policy.gamma = 0 }
            policy.formula = f
        }
        if let alpha { policy.alpha = alpha }
        if let beta { policy.beta = beta }
        if let gamma { policy.gamma = gamma }
        do { return try policy.validated() } catch { throw CLIError("--\(error.field): \(error.message)") }
    }
}
