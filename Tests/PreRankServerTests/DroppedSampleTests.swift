import Catalog
import Foundation
import Testing
import TwinTower
@testable import PreRankServer

/// `request_log.candidate_sample`: the sample of dropped candidates is uniform over them (a
/// chi-square test), never holds a returned or unknown id, and its inclusion probability is right.
@Suite struct DroppedSampleTests {
    struct Seeded: RandomNumberGenerator {
        var state: SplitMix64
        mutating func next() -> UInt64 { state.next() }
    }

    @Test func uniformOverTheDroppedCandidates() throws {
        let bundle = try #require(LiveCatalogDeltaTests.world.bundles[.f32])
        let ids = bundle.index.ids
        let candidates = (0..<200).map { ids[$0 * 13] } + [-1, -2, ids[0]]  // unknown ids and a duplicate
        let request = PreRankRequest(user: ["user_id": .string("u7")], candidates: candidates, k: 10)
        let result = try ScoringEngine.score(request, bundle: bundle, options: ScoringOptions())
        let returned = Set(result.items.map(\.id))
        var rng = Seeded(state: SplitMix64(seed: 42))
        var counts: [Int64: Int] = [:]
        let draws = 3000, n = 5
        for _ in 0..<draws {
            let s = try #require(DroppedSample.draw(request: request, result: result, bundle: bundle, n: n, using: &rng))
            #expect(s.inclusion == Double(n) / 190)
            #expect(s.items.count == n && Set(s.items.map(\.id)).count == n)
            for item in s.items { counts[item.id, default: 0] += 1 }
        }
        #expect(counts.keys.allSatisfy { !returned.contains($0) && $0 >= 0 })
        #expect(counts.count == 190)
        // Chi-square, 189 degrees of freedom: mean 189, sd 19.4; 300 is beyond p = 1e-6.
        let expected = Double(draws * n) / 190
        let chi2 = counts.values.reduce(0.0) { $0 + pow(Double($1) - expected, 2) / expected }
        #expect(chi2 < 300, "chi-square \(chi2)")
        // Probabilities are the ones the index gives.
        let s = try #require(DroppedSample.draw(request: request, result: result, bundle: bundle, n: 1, using: &rng))
        let row = bundle.index.row(of: s.items[0].id)
        let user = bundle.userTower.embed(try bundle.userEncoder.encode(ScoringEngine.userRow(request, bundle: bundle)))
        #expect(s.items[0].probabilities == bundle.index.scalarReference(user: user, row: Int(row), chain: bundle.chain)
            || zip(s.items[0].probabilities, bundle.index.scalarReference(user: user, row: Int(row), chain: bundle.chain)).allSatisfy { abs($0 - $1) < 1e-6 })
    }

    @Test func wholeIndexRequestsSampleTheServedCatalog() throws {
        let base = try #require(LiveCatalogDeltaTests.world.bundles[.f32])
        let index = base.index
        // A delta: 10 base items deleted, 5 new items.
        let deleted = (0..<10).map { index.ids[$0 * 100] }
        let newIDs: [Int64] = (0..<5).map { 10_000_000 + Int64($0) }
        let vectors = (0..<5).flatMap { r in (0..<index.taskCount).flatMap { index.vector(row: r, task: $0) } }
        let bundle = base.with(delta: ItemDelta().applying(ids: newIDs, vectors: vectors, deletes: deleted, sequence: 1, base: index))
        let request = PreRankRequest(user: ["user_id": .string("u1")], candidates: nil, k: 20)
        let result = try ScoringEngine.score(request, bundle: bundle, options: ScoringOptions())
        var rng = Seeded(state: SplitMix64(seed: 7))
        var newSeen = 0
        let pool = bundle.itemCount - 20
        for _ in 0..<400 {
            let s = try #require(DroppedSample.draw(request: request, result: result, bundle: bundle, n: 50, using: &rng))
            #expect(s.inclusion == 50 / Double(pool))
            let got = Set(s.items.map(\.id))
            #expect(got.count == 50 && got.isDisjoint(with: deleted) && got.isDisjoint(with: result.items.map(\.id)))
            newSeen += got.intersection(newIDs).count
        }
        // Each new item is in a sample with probability 50/pool: 400 · 5 · 50/pool ≈ 33.6 expected.
        let expected = 400.0 * 5 * 50 / Double(pool)
        #expect(abs(Double(newSeen) - expected) < 5 * expected.squareRoot(), "new items sampled \(newSeen), expected \(expected)")
    }
}
