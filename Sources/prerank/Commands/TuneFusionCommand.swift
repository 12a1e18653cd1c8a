import ArgumentParser
import Foundation
import Fusion
import Training
import TwinTower

struct TuneFusionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tune-fusion",
        abstract: "Grid-search the fusion weights α, β (γ) by WR@K; print the best and the config lines.",
        discussion: """
            Scores the test file once (as `prerank eval`), then re-fuses every grid point:
              additive        α·CTR + β·CTCVR + γ·relevance   (γ searched only with a relevance column)
              multiplicative  CTR^α · CTCVR^β
            Default grids: additive α 0,0.25,..,1, β 0,1,2,5,10,20,50,100,200, γ 0,0.005,0.01,0.02,0.05,0.1;
            multiplicative α, β 0,0.2,..,2. Ties go to the point with the better 3x3 neighbourhood
            (a plateau), then the larger α, the smaller β and γ. The best point's WR@K is exactly
            what `prerank eval --fusion ...` reports for it. --svg writes a heat map per formula.
            Warns when the best point is on the grid's edge (the largest or smallest β/α ratio, or
            the largest γ, tried) and when the search rests on fewer than 1,000 orders.
            """
    )

    @Option(help: "Model directory (model.json + weights.safetensors).") var model: String
    @Option(help: "Item index built from the model.") var index: String
    @Option(help: "Test impressions CSV (request_id, user fields, item_id, labels, optional relevance).") var data: String
    @Option(parsing: .unconditional, help: "K of WR@K.") var k: Int = 100
    @Option(help: "Heat map of WR@K over α × β (SVG).") var svg: String?
    @Option(help: "additive, multiplicative or both.") var formula: String = "both"
    @Option(help: "Additive α grid, comma-separated.") var additiveAlpha: String?
    @Option(help: "Additive β grid, comma-separated.") var additiveBeta: String?
    @Option(help: "Additive γ grid, comma-separated (used only when the data has a relevance column).") var gamma: String?
    @Option(help: "Multiplicative α grid, comma-separated.") var multiplicativeAlpha: String?
    @Option(help: "Multiplicative β grid, comma-separated.") var multiplicativeBeta: String?
    @Flag(help: "Print JSON: best per formula, every grid point, overall best.") var json = false

    func run() throws {
        guard k >= 1 else { throw CLIError("--k must be at least 1") }
        let formulas: [FusionFormula]
        switch formula.lowercased() {
        case "both": formulas = [.additive, .multiplicative]
        case "additive": formulas = [.additive]
        case "multiplicative": formulas = [.multiplicative]
        default: throw CLIError("--formula must be additive, multiplicative or both, not \(formula)")
        }
        func list(_ text: String?, _ name: String) throws -> [Double]? {
            guard let text else { return nil }
            let values = text.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard !values.isEmpty, values.allSatisfy({ $0 != nil && $0!.isFinite }) else {
                throw CLIError("--\(name) must be comma-separated finite numbers, got \"\(text)\"")
            }
            return values.map { $0! }
        }
        let aAlpha = try list(additiveAlpha, "additive-alpha"), aBeta = try list(additiveBeta, "additive-beta")
        let gammas = try list(gamma, "gamma")
        let mAlpha = try list(multiplicativeAlpha, "multiplicative-alpha"), mBeta = try list(multiplicativeBeta, "multiplicative-beta")
        do {
            let evaluator = try Evaluator(modelDirectory: model, indexPath: index)
            let scored = try evaluator.score(data: data) { Progress.line("tune-fusion: \($0) rows read") }
            if scored.unknownItems > 0 { Progress.line("tune-fusion: \(scored.unknownItems) rows skipped: item_id not in the index") }
            guard scored.rows > 0 else { throw CLIError("\(data): no row with an item in the index") }
            let lists = TuneFusion.Lists(scored)
            guard lists.count > 0 else { throw CLIError("\(data): no order in any request: WR@K is undefined") }
            // A list no longer than k is captured whole whatever the weights: WR@K cannot tell
            // weightings apart there, and if that holds for every list the search is meaningless.
            let lengths = (0..<lists.count).map { lists.start[$0 + 1] - lists.start[$0] }
            let longest = lengths.max() ?? 0
            guard k < longest else {
                throw CLIError("--k \(k) is not below any request's list length (the longest has \(longest) candidates): every weighting captures every order (WR@\(k) = 1); use a --k below the list length")
            }
            let short = lengths.filter { $0 <= k }.count
            if short > 0 {
                Progress.line("tune-fusion: warning: \(short) of \(lists.count) requests with orders have at most k = \(k) candidates; they count 1 at every grid point", final: true)
            }
            var results: [FusionGridResult] = []
            for f in formulas {
                var grid: FusionGrid
                switch f {
                case .additive:
                    grid = FusionGrid.defaultAdditive(relevance: scored.hasRelevance)
                    if let aAlpha { grid.alphas = aAlpha }
                    if let aBeta { grid.betas = aBeta }
                    if let gammas, scored.hasRelevance { grid.gammas = gammas }
                case .multiplicative:
                    grid = FusionGrid.defaultMultiplicative()
                    if let mAlpha { grid.alphas = mAlpha }
                    if let mBeta { grid.betas = mBeta }
                }
                let started = Date()
                let result = TuneFusion.search(lists, grid: grid, k: k)
                Progress.line(String(format: "tune-fusion: %@ %d points in %.2f s", f.rawValue, grid.pointCount, Date().timeIntervalSince(started)))
                let values = result.wr.compactMap { $0 }
                if let lo = values.min(), let hi = values.max(), hi - lo <= 1e-12 {
                    Progress.line(String(format: "tune-fusion: warning: the %@ grid does not separate (every point has WR@%d = %.6f): its recommended weights are arbitrary", f.rawValue, k, lo), final: true)
                }
                for warning in TuneFusion.warnings(result, orders: lists.orders) {
                    Progress.line("tune-fusion: warning: " + warning, final: true)
                }
                results.append(result)
            }
            if let svg {
                let subtitle = "\(scored.rows) rows, \(scored.requests) requests (\(lists.count) with orders); model \(evaluator.model.spec.version)"
                do {
                    try FusionHeatMap.svg(results, subtitle: subtitle).write(toFile: svg, atomically: true, encoding: .utf8)
                } catch {
                    throw CLIError("\(svg): cannot write: \(error.localizedDescription)")
                }
                Progress.line("tune-fusion: heat map -> \(svg)")
            }
            if json {
                print(TuneFusion.json(results, rows: scored.rows, requests: scored.requests, listsWithOrders: lists.count))
            } else {
                print(TuneFusion.text(results, rows: scored.rows, requests: scored.requests, listsWithOrders: lists.count))
            }
        } catch let e as FormatError {
            throw CLIError(e.description)
        }
    }
}
