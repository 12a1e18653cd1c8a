import Foundation
import Testing
import TwinTower
@testable import PreRankServer

/// What an operator reads is what happens (issue #27): reloads list the keys they applied and the
/// ones waiting for a restart; ignored, missing and coerced request features are visible.
@Suite struct OperatorTruthTests {
    static func config(_ yaml: String) throws(ConfigError) -> PreRankConfig {
        try ConfigLoader.parse(yaml: "model: {dir: m, index: i.st}\n" + yaml)
    }

    // MARK: reloads

    @Test func reloadPlanSplitsAppliedFromRestartOnlyKeys() throws {
        let started = try Self.config("server: {port: 8080, workers: 2}\nfusion: {beta: 20}")
        let next = try Self.config("server: {port: 9090, workers: 4, max_candidates: 10}\nfusion: {beta: 7.5}")
        let plan = next.reloadPlan(previous: started, started: started)
        #expect(plan.needsRestart == ["server.port", "server.workers"])
        #expect(plan.applied == ["server.max_candidates", "fusion.beta"])
        // A later reload that changes something else still reports the port and workers: they
        // are compared with what the listener started with, not with the previous reload.
        let later = try Self.config("server: {port: 9090, workers: 4, max_candidates: 10}\nfusion: {beta: 3}")
        let again = later.reloadPlan(previous: next, started: started)
        #expect(again.needsRestart == ["server.port", "server.workers"])
        #expect(again.applied == ["fusion.beta"])
        // Back to the running values: nothing waits for a restart.
        #expect(started.reloadPlan(previous: later, started: started).needsRestart.isEmpty)
    }

    @Test func everyRestartOnlyKeyIsReportedAndNoOtherKey() throws {
        let base = try Self.config("")
        // Each key of the schema, changed alone, is either applied or restart-only, never lost.
        var changed = base
        changed.server.host = "0.0.0.0"
        changed.server.queueDepth = 3
        changed.budgetMs = 80
        changed.request.unknownFeatures = .reject
        changed.canary = .init(fusion: base.fusion, share: 0.2)
        let plan = changed.reloadPlan(previous: base, started: base)
        #expect(plan.needsRestart == ["server.host", "server.queue_depth"])
        #expect(plan.applied == ["budget_ms", "request.unknown_features", "canary.fusion", "canary.share", "canary.key"])
        #expect(Set(plan.needsRestart).isSubset(of: Set(PreRankConfig.restartOnlyKeys)))
    }

    @Test func reloadAnswerListsBothKeySets() throws {
        let m = MetricsRegistry()
        m.setRestartPending(["server.port"])
        let text = m.render()
        #expect(text.contains("prerank_config_restart_pending{key=\"server.port\"} 1\n"))
        #expect(text.contains("prerank_config_restart_pending{key=\"server.workers\"} 0\n"))
        #expect(text.contains("# TYPE prerank_canary_share gauge\nprerank_canary_share 0\n"))
        m.setCanaryShare(0.1)
        #expect(m.render().contains("prerank_canary_share 0.1\n"))
    }

    @Test func unknownFeaturesPolicyParses() throws {
        #expect(try Self.config("").request.unknownFeatures == .warn)
        #expect(try Self.config("request: {unknown_features: reject}").request.unknownFeatures == .reject)
        #expect(try Self.config("request: {unknown_features: ignore}").request.unknownFeatures == .ignore)
        #expect(throws: ConfigError.self) { try Self.config("request: {unknown_features: shout}") }
        do throws(ConfigError) {
            _ = try Self.config("request: {unknown_features: shout}")
        } catch {
            #expect(error.description == "request.unknown_features must be one of ignore, warn, reject (line 2)")
        }
        #expect(ScoringPipeline.options(from: try Self.config("request: {unknown_features: reject}")).rejectUnknownFeatures)
        #expect(!ScoringPipeline.options(from: try Self.config("")).rejectUnknownFeatures)
    }

    // MARK: features

    static let fields = [
        FeatureSpec(name: "user_id", side: .user, kind: .categorical, buckets: 10, dim: 2),
        FeatureSpec(name: "segment", side: .user, kind: .categorical, buckets: 10, dim: 2),
        FeatureSpec(name: "age", side: .user, kind: .dense),
        FeatureSpec(name: "query_terms", side: .user, kind: .multi, buckets: 10, dim: 2),
    ]

    static func audit(_ body: String) throws -> FeatureAudit {
        FeatureAudit.of(try RequestDecoder.decode(Array(body.utf8)), fields: fields)
    }

    @Test func misspeltFeatureIsIgnoredAndItsTargetMissing() throws {
        let a = try Self.audit(#"{"user": {"user_id": "u1", "segmnt": "gold", "age": 31}, "query": {"query_terms": ["red", "shoe"]}, "candidates": [1]}"#)
        #expect(a.ignored == ["user.segmnt"])
        #expect(a.missing == ["segment"])
        #expect(a.used == ["user_id", "age", "query_terms"])
        #expect(a.coerced.isEmpty)
    }

    @Test func queryTermsAsOneStringIsCoercedAndAMissingUserIsMissing() throws {
        let a = try Self.audit(#"{"query": {"query_terms": "red shoe"}, "candidates": [1]}"#)
        #expect(a.coerced == ["query.query_terms"])
        #expect(a.missing == ["user_id", "segment", "age"])
        #expect(a.ignored.isEmpty && a.used.isEmpty)
        let empty = try Self.audit(#"{"user": {"user_id": "", "segment": null, "age": 3}, "query": {"query_terms": []}, "candidates": [1]}"#)
        #expect(empty.missing == ["user_id", "segment", "query_terms"] && empty.used == ["age"])
    }

    @Test func rejectionNamesTheField() throws {
        let a = try Self.audit(#"{"user": {"zeta": 1, "alpha": 2}, "candidates": [1]}"#)
        #expect(a.ignored == ["user.alpha", "user.zeta"])
        let e = try #require(a.rejection(modelVersion: "v1", known: Self.fields))
        #expect(e.status == 400 && e.code == "unknown_feature" && e.field == "user.alpha")
        #expect(e.message.hasPrefix("user.alpha is not a feature of model v1"))
        #expect(try Self.audit(#"{"user": {"age": 2}, "candidates": [1]}"#).rejection(modelVersion: "v1", known: Self.fields) == nil)
    }

    /// Bounded cardinality: any number of distinct unknown names is one series.
    @Test func featureMetricHasBoundedLabels() throws {
        let m = MetricsRegistry()
        for i in 0..<500 {
            m.recordFeatures(try Self.audit(#"{"user": {"junk_\#(i)": 1, "age": 2}, "query": {"query_terms": "x"}, "candidates": [1]}"#))
        }
        let lines = m.render().split(separator: "\n").filter { $0.hasPrefix("prerank_request_features_total{") }
        #expect(lines.contains("prerank_request_features_total{feature=\"other\",outcome=\"ignored\"} 500"))
        #expect(lines.contains("prerank_request_features_total{feature=\"age\",outcome=\"used\"} 500"))
        #expect(lines.contains("prerank_request_features_total{feature=\"query_terms\",outcome=\"coerced\"} 500"))
        #expect(lines.contains("prerank_request_features_total{feature=\"segment\",outcome=\"missing\"} 500"))
        #expect(lines.count == 5, "\(lines)")
    }

    @Test func debugAnswerListsFeatures() throws {
        var r = PreRankResponse(requestID: "r", modelVersion: "v", partial: false, tookMs: 1, items: [], unknownIDs: [])
        #expect(!String(decoding: ResponseEncoder.encode(r), as: UTF8.self).contains("features"))
        r.features = FeatureAudit(ignored: ["user.segmnt"], missing: ["segment"], coerced: ["query.query_terms"])
        let json = try JSONSerialization.jsonObject(with: Data(ResponseEncoder.encode(r))) as? [String: Any]
        let f = try #require(json?["features"] as? [String: [String]])
        #expect(f == ["ignored": ["user.segmnt"], "missing": ["segment"], "coerced": ["query.query_terms"]])
    }
}
