import Foundation
import Fusion
import Testing
import TwinTower
@testable import Training

@Suite struct EvalMetricsTests {
    /// The O(n²) definition: P(score_pos > score_neg) + ½·P(tie), over all (pos, neg) pairs.
    func bruteForceAUC(_ s: [Double], _ y: [Bool]) -> Double? {
        var num = 0.0, pairs = 0.0
        for i in s.indices where y[i] {
            for j in s.indices where !y[j] {
                pairs += 1
                num += s[i] > s[j] ? 1 : (s[i] == s[j] ? 0.5 : 0)
            }
        }
        return pairs > 0 ? num / pairs : nil
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8])
    func aucEqualsPairwiseDefinitionWithManyTies(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let n = 50 + Int(seed) * 40
        // 6 distinct values only: most pairs tie; the positive rate varies with the seed.
        let scores = (0..<n).map { _ in Double(Int.random(in: 0...5, using: &rng)) / 10 }
        let rate = Double(seed) / 10
        let labels = (0..<n).map { i in Double.random(in: 0..<1, using: &rng) < rate + scores[i] / 2 ? 1.0 : 0.0 }
        let fast = Metrics.auc(scores: scores, labels: labels)
        let slow = bruteForceAUC(scores, labels.map { $0 > 0 })
        #expect(fast != nil && slow != nil)
        #expect(abs(fast! - slow!) < 1e-12)
        // Continuous scores (no ties) as well.
        let distinct = (0..<n).map { _ in Double.random(in: 0..<1, using: &rng) }
        #expect(abs(Metrics.auc(scores: distinct, labels: labels)! - bruteForceAUC(distinct, labels.map { $0 > 0 })!) < 1e-12)
    }

    @Test func aucHandExamples() {
        // pos {0.35, 0.8}, neg {0.1, 0.4}: pairs (0.35>0.1)=1 (0.35<0.4)=0 (0.8>0.1)=1 (0.8>0.4)=1 → 3/4
        #expect(Metrics.auc(scores: [0.1, 0.4, 0.35, 0.8], labels: [0, 0, 1, 1]) == 0.75)
        // pos {0.5, 0.9}, neg {0.5, 0.5}: two ties (½ each) + two wins → 3/4
        #expect(Metrics.auc(scores: [0.5, 0.5, 0.5, 0.9], labels: [1, 0, 0, 1]) == 0.75)
        // all tied → ½
        #expect(Metrics.auc(scores: [0.2, 0.2, 0.2], labels: [1, 0, 0]) == 0.5)
        // one class only → undefined
        #expect(Metrics.auc(scores: [0.1, 0.2], labels: [1, 1]) == nil)
        #expect(Metrics.auc(scores: [0.1, 0.2], labels: [0, 0]) == nil)
        // label values > 0 (counts) are positives
        #expect(Metrics.auc(scores: [0.1, 0.9], labels: [0, 3]) == 1)
    }

    @Test func logLossHandExamples() {
        // −(ln 0.9 + ln 0.8)/2 = (0.1053605157 + 0.2231435513)/2 = 0.164252033486018
        #expect(abs(Metrics.logLoss(probabilities: [0.9, 0.2], labels: [1, 0])! - 0.164252033486018) < 1e-12)
        // clipped: p = 0 with y = 1 → −ln(1e-7) = 16.118095651; p = 1 with y = 1 → −ln(1 − 1e-7) ≈ 1e-7
        // mean = (16.11809565095832 + 1.00000005e-7)/2 = 8.059047875479163
        #expect(abs(Metrics.logLoss(probabilities: [0, 1], labels: [1, 1])! - 8.059047875479163) < 1e-9)
        #expect(Metrics.logLoss(probabilities: [], labels: []) == nil)
    }

    @Test func weightedRecallHandExamples() {
        // ranked ids 1,2,3,4,5 with orders 0,2,0,1,1; top 2 = ids 1, 2 → 2 of 4 orders
        var r = Metrics.capturedWeight(scores: [0.9, 0.8, 0.7, 0.6, 0.5], ids: [1, 2, 3, 4, 5], weights: [0, 2, 0, 1, 1], k: 2)
        #expect(r.captured == 2 && r.total == 4)
        // all tied: order by id → 10 (0 orders), 20 (1), 30 (1)
        r = Metrics.capturedWeight(scores: [0.5, 0.5, 0.5], ids: [30, 10, 20], weights: [1, 0, 1], k: 1)
        #expect(r.captured == 0 && r.total == 2)
        r = Metrics.capturedWeight(scores: [0.5, 0.5, 0.5], ids: [30, 10, 20], weights: [1, 0, 1], k: 2)
        #expect(r.captured == 1 && r.total == 2)
        // n ≤ K captures everything
        r = Metrics.capturedWeight(scores: [0.1, 0.2], ids: [1, 2], weights: [1, 1], k: 5)
        #expect(r.captured == 2 && r.total == 2)
        // NaN ranks last
        r = Metrics.capturedWeight(scores: [.nan, 0.1], ids: [1, 2], weights: [1, 0], k: 1)
        #expect(r.captured == 0 && r.total == 1)
    }

    @Test func ndcgHandExamples() {
        // ranked grades 0, 3, 1; gains 0, 7, 1
        // K=2: DCG = 0/log2(2) + 7/log2(3) = 4.41650827; IDCG = 7/1 + 1/log2(3) = 7.63092975 → 0.5787641110093001
        let s: [Double] = [0.9, 0.8, 0.7], ids: [Int64] = [1, 2, 3], g: [Double] = [0, 3, 1]
        #expect(abs(Metrics.ndcg(scores: s, ids: ids, grades: g, k: 2)! - 0.5787641110093001) < 1e-12)
        // K=3: DCG = 4.41650827 + 1/log2(4) = 4.91650827; IDCG = 7.63092975 → 0.6442869262030828
        #expect(abs(Metrics.ndcg(scores: s, ids: ids, grades: g, k: 3)! - 0.6442869262030828) < 1e-12)
        // perfect order → 1; no positive grade → undefined
        #expect(Metrics.ndcg(scores: [0.3, 0.2, 0.1], ids: [1, 2, 3], grades: [3, 1, 0], k: 2) == 1)
        #expect(Metrics.ndcg(scores: [0.3, 0.2], ids: [1, 2], grades: [0, 0], k: 2) == nil)
    }

    @Test func rankingOrderIsScoreDescThenIdAsc() {
        #expect(Metrics.ranking(scores: [0.5, 0.9, 0.5, 0.1, 0.5], ids: [30, 1, 10, 2, 20]) == [1, 2, 4, 0, 3])
    }

    /// Evaluator.evaluate on a hand-built scored file (2 tasks: ctr/click, ctcvr/order).
    ///
    ///     request A: ctr 0.9 0.6 0.3 0.1, ids 1 2 3 4, click 1 1 0 0, order 0 1 0 1
    ///     request B: ctr 0.5 0.5 0.2,     ids 7 5 6,   click 1 0 1,   order 1 0 0
    ///     request C: ctr 0.4,             id  9,       click 0,       order 0
    ///     fusion additive α = 1, β = 0 (score = CTR), K = 2
    @Test func listMetricsOnAHandBuiltFile() {
        let ctr: [Float] = [0.9, 0.6, 0.3, 0.1, 0.5, 0.5, 0.2, 0.4]
        let click: [Float] = [1, 1, 0, 0, 1, 0, 1, 0]
        let order: [Float] = [0, 1, 0, 1, 1, 0, 0, 0]
        let ids: [Int64] = [1, 2, 3, 4, 7, 5, 6, 9]
        let request: [Int32] = [0, 0, 0, 0, 1, 1, 1, 2]
        var probabilities: [Float] = [], labels: [Float] = []
        for i in 0..<8 {
            probabilities += [ctr[i], ctr[i] / 10]
            labels += [click[i], order[i]]
        }
        let data = ScoredImpressions(taskNames: ["ctr", "ctcvr"], labelColumns: ["click", "order"], requestIDs: ["A", "B", "C"],
                                     requestOfRow: request, itemIDs: ids, probabilities: probabilities, labels: labels,
                                     relevance: nil, grouped: [0, 1, 2, 3, 4, 5, 6, 7], groupStart: [0, 4, 7, 8],
                                     unknownItems: 0, missingUserColumns: [], userTowerRuns: 0)
        let report = Evaluator.evaluate(data, fusion: FusionPolicy(formula: .additive, alpha: 1, beta: 0, gamma: 0), k: 2)
        // WR@2: A top 2 = ids 1, 2 → 1 of 2 orders; B: tie 0.5 → id 5 then id 7 → 1 of 1; C: 0 of 0 → 2/3
        #expect(report.weightedRecall == 2.0 / 3.0)
        #expect(report.capturedOrders == 2 && report.totalOrders == 3 && report.requestsWithOrders == 2)
        // List AUC: A pos {0.6, 0.1} neg {0.9, 0.3}: 1 win of 4 → 0.25; B pos {0.5} neg {0.5, 0.2}: ½ + 1 → 0.75;
        // C has no positive → mean of 2 = 0.5
        #expect(report.listAUC == 0.5 && report.listAUCRequests == 2)
        // NDCG@2, grade = click + order: A ranked grades 1, 2, 0, 1 → DCG = 1 + 3/log2 3, IDCG = 3 + 1/log2 3 → 0.79670758;
        // B ranked (id 5, 7, 6) grades 0, 2, 1 → DCG = 3/log2 3, IDCG = 3 + 1/log2 3 → 0.52129603; mean 0.6590018048024133
        #expect(abs(report.ndcg! - 0.6590018048024133) < 1e-12 && report.ndcgRequests == 2)
        // CTR AUC over all rows: pos {0.9, 0.6, 0.5, 0.2} neg {0.3, 0.1, 0.5, 0.4}: 4 + 4 + 3.5 + 1 = 12.5 of 16
        #expect(report.tasks[0].auc == 0.78125)
        #expect(report.tasks[0].positives == 4 && report.tasks[1].positives == 3)
        #expect(report.rows == 8 && report.requests == 3)
        // JSON shape (SPEC §4)
        let json = try! JSONSerialization.jsonObject(with: Data(report.json().utf8)) as! [String: Any]
        let lists = json["lists"] as! [String: Any]
        #expect(Set(lists.keys) == ["wr@2", "list_auc", "ndcg@2"])
        #expect((json["rows"] as! Int) == 8)
        let tasks = json["tasks"] as! [String: [String: Any]]
        #expect(tasks["ctr"]?["auc"] as? Double == 0.78125)
        // tune-fusion's WR@K is the same function
        #expect(TuneFusion.weightedRecall(data, fusion: FusionPolicy(formula: .additive, alpha: 1, beta: 0, gamma: 0), k: 2) == 2.0 / 3.0)
    }

    @Test func fusionTextParsing() throws {
        #expect(try FusionText.parse("additive:1,20,0.1") == FusionPolicy(formula: .additive, alpha: 1, beta: 20, gamma: 0.1))
        #expect(try FusionText.parse("multiplicative:0.8,1") == FusionPolicy(formula: .multiplicative, alpha: 0.8, beta: 1, gamma: 0))
        #expect(throws: FusionTextError.self) { try FusionText.parse("multiplicative:1,1,0.5") }
        #expect(throws: FusionTextError.self) { try FusionText.parse("sum:1,2") }
        #expect(throws: FusionTextError.self) { try FusionText.parse("additive:1") }
        #expect(throws: FusionTextError.self) { try FusionText.parse("additive:1,x") }
        #expect(FusionText.configYAML(FusionPolicy(formula: .additive, alpha: 1, beta: 20, gamma: 0.01))
            == "fusion:\n  formula: additive\n  alpha: 1\n  beta: 20\n  gamma: 0.01")
    }
}
