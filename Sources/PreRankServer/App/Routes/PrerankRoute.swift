import Dispatch
import Foundation
import HTTPTransport
import StrictJSON

/// `POST /prerank`: decode and pick the arm here (the request's cost in worker slots depends on
/// both), admit, then score on a worker through the same `ScoringPipeline` as `prerank score`,
/// and record metrics, logs and the request-log line.
struct PrerankRoute: RouteHandler {
    let context: AppContext
    let admission: Admission
    let warnings: UnknownFieldWarnings

    func handle(_ request: HTTPRequest, done: @escaping RouteDone) {
        if let error = JSONMediaType.refusal(request) {
            done(.error(error), nil)
            return
        }
        guard let snap = context.current else {
            done(.error(AppContext.notReady), nil)
            return
        }
        let prepared: ScoringPipeline.Prepared
        do throws(APIError) {
            prepared = try ScoringPipeline.prepare(body: request.body, maxCandidates: snap.options.maxCandidates, select: snap.select)
        } catch {
            logRefusal(error)
            done(.error(error), nil)
            return
        }
        // Metrics and logs name the arm even without a canary (the answer carries `arm` only
        // with one): every request from here on was assigned to an arm.
        let armLabel = prepared.arm ?? "primary"
        let cost = ScoringCost.slots(for: prepared.request, indexCount: prepared.bundle.itemCount, options: snap.options)
        let receivedAt = request.receivedAt
        let budget = snap.config.budgetMs
        admission.submit(cost: cost, receivedAt: receivedAt, budgetMs: budget, arm: armLabel, done: done) {
            do throws(APIError) {
                let outcome = try ScoringPipeline.score(prepared, options: snap.options(arm: prepared.arm), receivedAt: receivedAt,
                                                        budgetMs: budget)
                record(outcome, snap: snap, arm: armLabel)
                done(.json(200, outcome.body), armLabel)
            } catch {
                if error.status == 504 { context.metrics.recordBudgetExpired() }
                logRefusal(error)
                done(.error(error), armLabel)
            }
        }
    }

    private func logRefusal(_ error: APIError) {
        context.logger.info("prerank", metadata: ["route": "/prerank", "status": .stringConvertible(error.status), "code": "\(error.code)",
                                                  "field": "\(error.field ?? "")"])
    }

    /// Stage times, candidates, features, warnings, the request log and the sampled access log
    /// of one answered request.
    private func record(_ outcome: ScoringPipeline.Outcome, snap: ServingSnapshot, arm: String) {
        let metrics = context.metrics
        let r = outcome.result
        metrics.recordStage("parse", seconds: Double(outcome.parseNanos) / 1e9)
        metrics.recordStage("user_tower", seconds: Double(r.stages.userTower) / 1e9)
        metrics.recordStage("resolve", seconds: Double(r.stages.resolve) / 1e9)
        metrics.recordStage("score", seconds: Double(r.stages.score) / 1e9)
        if r.rescored > 0 { metrics.recordStage("rescore", seconds: Double(r.stages.rescore) / 1e9) }
        metrics.recordStage("topk", seconds: Double(r.stages.topK) / 1e9)
        metrics.recordStage("encode", seconds: Double(outcome.encodeNanos) / 1e9)
        metrics.recordCandidates(r.candidateCount)
        if r.partial { metrics.recordPartial() }
        metrics.recordFeatures(outcome.features)
        if snap.config.request.unknownFeatures == .warn && !outcome.features.ignored.isEmpty {
            warnings.warnOnce(ignored: outcome.features.ignored, modelVersion: outcome.bundle.version)
        }
        logRequest(outcome, arm: arm)
        let rate = snap.config.logging.accessSampleRate
        if rate > 0 && (rate >= 1 || Double.random(in: 0..<1) < rate) { context.logger.info("prerank", metadata: [
            // Numbers and booleans as such, so a JSON log line types them (took_ms is a number).
            "route": "/prerank", "status": .stringConvertible(200), "candidates": .stringConvertible(r.candidateCount),
            "took_ms": .stringConvertible((outcome.response.tookMs * 100).rounded() / 100),
            "request_id": "\(outcome.request.requestID ?? "")", "arm": "\(arm)",
            "partial": .stringConvertible(r.partial),
        ]) }
    }

    /// The request-log line, when this request is sampled.
    private func logRequest(_ o: ScoringPipeline.Outcome, arm: String) {
        guard let log = context.requestLog.current, log.shouldSample(requestID: o.request.requestID) else { return }
        let f = o.result.fusion
        var dropped: DroppedSample.Sample?
        if let n = context.current?.config.requestLog?.candidateSample, n > 0 {
            var rng = SystemRandomNumberGenerator()
            dropped = DroppedSample.draw(request: o.request, result: o.result, bundle: o.bundle, n: n, using: &rng)
        }
        let line = RequestLogLine.encode(
            time: Date().timeIntervalSince1970, requestID: o.request.requestID, modelVersion: o.bundle.version, arm: arm,
            fusion: (f.formula.rawValue, f.alpha, f.beta, f.gamma), user: o.request.user, query: o.request.query,
            candidates: o.request.candidates, relevance: o.request.relevance,
            items: o.result.items.map { ($0.id, $0.score, $0.probabilities) }, tasks: o.bundle.model.taskNames,
            partial: o.result.partial, dropped: dropped)
        log.submit(line)
    }
}
