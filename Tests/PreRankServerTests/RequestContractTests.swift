import Foundation
import Fusion
import Testing
import TwinTower
@testable import PreRankServer

/// Caller mistakes are refused, not guessed at (issue: "an API that refuses caller mistakes"):
/// fusion weights the config does not take, whole-index requests where config forbids them,
/// and unknown ids listed once however often they are sent.
@Suite struct RequestContractTests {
    var bundle: ServingBundle { ScoringEngineKernelTests.world.bundles[.f32]! }

    @Test func disallowedFusionOverrideIsA400() throws {
        let request = PreRankRequest(candidates: [bundle.index.ids[0]], fusion: FusionOverride(beta: 3))
        var options = ScoringOptions()
        #expect(options.allowFusionOverride == false)
        do {
            _ = try ScoringEngine.score(request, bundle: bundle, options: options)
            Issue.record("a disallowed override was accepted")
        } catch {
            #expect(error.status == 400 && error.code == "fusion_override_not_allowed" && error.field == "fusion")
        }
        // An empty override changes nothing and is accepted; an allowed one is applied.
        #expect(throws: Never.self) {
            _ = try ScoringEngine.score(PreRankRequest(candidates: [bundle.index.ids[0]], fusion: FusionOverride()), bundle: bundle, options: options)
        }
        options.allowFusionOverride = true
        let r = try ScoringEngine.score(request, bundle: bundle, options: options)
        #expect(r.fusion.beta == 3)
    }

    @Test func wholeIndexNeedsConfig() throws {
        var options = ScoringOptions()
        let whole = PreRankRequest(k: 3)
        #expect(try ScoringEngine.score(whole, bundle: bundle, options: options).candidateCount == bundle.index.count)
        options.allowWholeIndex = false
        do {
            _ = try ScoringEngine.score(whole, bundle: bundle, options: options)
            Issue.record("a whole-index request was accepted with allow_whole_index false")
        } catch {
            #expect(error.status == 400 && error.field == "candidates")
        }
        #expect(throws: Never.self) { _ = try ScoringEngine.score(PreRankRequest(candidates: [], k: 3), bundle: bundle, options: options) }
        let config = try ConfigLoader.parse(yaml: "topk: {allow_whole_index: false}", requireModel: false)
        #expect(ScoringPipeline.options(from: config).allowWholeIndex == false)
        #expect(ScoringPipeline.options(from: PreRankConfig()).allowWholeIndex == true)
    }

    @Test func unknownIdsAreListedOnceInRequestOrder() throws {
        let known = bundle.index.ids[5]
        let request = PreRankRequest(candidates: [7, known, 7, 9, known, 9, 7, 11], k: 10)
        let r = try ScoringEngine.score(request, bundle: bundle, options: ScoringOptions())
        #expect(r.unknownIDs == [7, 9, 11])
        #expect(r.items.map(\.id) == [known])
    }
}
