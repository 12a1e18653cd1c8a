import Catalog
import Foundation
import Testing
import TwinTower
@testable import PreRankServer

/// `DroppedSample` is a uniform sample *without replacement*: not only is every dropped candidate
/// equally likely (DroppedSampleTests), every pair of them is too (a sampler that takes a random
/// window, or a biased shuffle, passes the first and fails the second), on both paths of a
/// whole-index request as well; and π = sampled / dropped, which is what `join-logs --dropped`
/// turns into the weight 1/π.
@Suite struct DroppedSampleUniformityTests {
    typealias Seeded = DroppedSampleTests.Seeded

    /// Pearson's statistic of `observed` counts against equal expected counts.
    static func chiSquare(_ observed: [Int], expected: Double) -> Double {
        observed.reduce(0.0) { $0 + pow(Double($1) - expected, 2) / expected }
    }

    /// Chi-square bound far in the upper tail (≈ 6 standard deviations): a correct sampler fails
    /// with probability < 1e-6 for a given seed, a biased one of the kinds tried fails every time.
    static func bound(dof: Int) -> Double { Double(dof) + 6 * (2 * Double(dof)).squareRoot() }

    @Test func pairsOfDroppedCandidatesAreEquallyLikely() throws {
        let bundle = try #require(LiveCatalogDeltaTests.world.bundles[.f32])
        let ids = bundle.index.ids
        let candidates = (0..<22).map { ids[$0 * 37] }
        let request = PreRankRequest(user: ["user_id": .string("u3")], candidates: candidates, k: 10)
        let result = try ScoringEngine.score(request, bundle: bundle, options: ScoringOptions())
        let pool = candidates.filter { id in !result.items.contains { $0.id == id } }
        #expect(pool.count == 12)
        let position = Dictionary(uniqueKeysWithValues: pool.enumerated().map { ($1, $0) })
        var rng = Seeded(state: SplitMix64(seed: 2025))
        let draws = 8000, n = 3
        var singles = [Int](repeating: 0, count: 12)
        var pairs = [Int](repeating: 0, count: 12 * 12)
        for _ in 0..<draws {
            let s = try #require(DroppedSample.draw(request: request, result: result, bundle: bundle, n: n, using: &rng))
            #expect(s.inclusion == Double(n) / 12)
            let got = try s.items.map { try #require(position[$0.id]) }.sorted()
            #expect(Set(got).count == n)
            for a in got { singles[a] += 1 }
            for a in got.indices { for b in got.indices where a < b { pairs[got[a] * 12 + got[b]] += 1 } }
        }
        let single = Self.chiSquare(singles, expected: Double(draws * n) / 12)
        #expect(single < Self.bound(dof: 11), "single chi-square \(single)")
        // Each of the 66 pairs is in a sample with probability n(n−1) / (12·11).
        let pairCounts = (0..<12).flatMap { a in ((a + 1)..<12).map { pairs[a * 12 + $0] } }
        let pair = Self.chiSquare(pairCounts, expected: Double(draws) * Double(n * (n - 1)) / Double(12 * 11))
        #expect(pair < Self.bound(dof: 65), "pair chi-square \(pair)")
    }

    /// A whole-index request: the rejection path (pool much larger than the sample) and the
    /// enumeration path (pool ≤ 4 × sample) are both uniform over the served catalog (base rows not
    /// deleted, plus the delta's new items) minus what was returned, and π = sampled / pool.
    @Test(arguments: [5, 800])
    func wholeIndexSamplesAreUniformOverTheServedCatalog(n: Int) throws {
        let base = try #require(LiveCatalogDeltaTests.world.bundles[.f32])
        let index = base.index
        let deleted = (0..<40).map { index.ids[$0 * 50 + 7] }
        let newIDs: [Int64] = (0..<40).map { 20_000_000 + Int64($0) }
        let vectors = (0..<40).flatMap { r in (0..<index.taskCount).flatMap { index.vector(row: r, task: $0) } }
        let bundle = base.with(delta: ItemDelta().applying(ids: newIDs, vectors: vectors, deletes: deleted, sequence: 1, base: index))
        let request = PreRankRequest(user: ["user_id": .string("u5")], candidates: nil, k: 30)
        let result = try ScoringEngine.score(request, bundle: bundle, options: ScoringOptions())
        let returned = Set(result.items.map(\.id))
        let served = Set(index.ids).subtracting(deleted).union(newIDs)
        let pool = served.subtracting(returned).sorted()
        #expect(bundle.itemCount - returned.count == pool.count)
        // 20 bins of base items by position, and the delta's new items as a 21st: a bias between
        // base and delta rows, or along the catalog, moves whole bins.
        let fresh = Set(newIDs)
        let basePool = pool.filter { !fresh.contains($0) }
        let bins = 21
        var bin = Dictionary(uniqueKeysWithValues: basePool.enumerated().map { ($1, $0 * 20 / basePool.count) })
        for id in pool where fresh.contains(id) { bin[id] = 20 }
        var binSize = [Int](repeating: 0, count: bins)
        for b in bin.values { binSize[b] += 1 }
        var counts = [Int](repeating: 0, count: bins)
        var rng = Seeded(state: SplitMix64(seed: UInt64(n)))
        let draws = n == 5 ? 2000 : 12
        for _ in 0..<draws {
            let s = try #require(DroppedSample.draw(request: request, result: result, bundle: bundle, n: n, using: &rng))
            #expect(s.inclusion == Double(n) / Double(pool.count))
            #expect(Set(s.items.map(\.id)).count == n)
            for item in s.items { counts[try #require(bin[item.id], "sampled \(item.id), not in the pool")] += 1 }
        }
        let total = Double(draws * n)
        let chi2 = zip(counts, binSize).reduce(0.0) { acc, c in
            let e = total * Double(c.1) / Double(pool.count)
            return acc + pow(Double(c.0) - e, 2) / e
        }
        #expect(chi2 < Self.bound(dof: bins - 1), "chi-square \(chi2), counts \(counts)")
    }
}
