import Testing
@testable import Fusion

@Suite struct FusionTests {
    @Test func formulas() {
        let add = FusionPolicy(formula: .additive, alpha: 1, beta: 20, gamma: 0.1)
        #expect(abs(add.score(ctr: 0.1, ctcvr: 0.002, relevance: 2) - (0.1 + 0.04 + 0.2)) < 1e-7)
        let mul = FusionPolicy(formula: .multiplicative, alpha: 0.8, beta: 20, gamma: 0)
        // CTCVR^20 underflows Float but not the Double score: ranking is still informative.
        #expect(mul.score(ctr: 0.1, ctcvr: 0.001) > 0)
        #expect(mul.score(ctr: 0.1, ctcvr: 0.002) > mul.score(ctr: 0.1, ctcvr: 0.001))
    }

    @Test func validationNamesTheWeight() {
        #expect(throws: FusionError(field: "gamma", message: "must be 0 with the multiplicative formula")) {
            try FusionPolicy(formula: .multiplicative, alpha: 1, beta: 1, gamma: 0.5).validated()
        }
        #expect(throws: FusionError(field: "alpha", message: "must be a finite number")) {
            try FusionPolicy(alpha: .nan).validated()
        }
    }

    /// Top-K equals a full sort (score descending, id ascending) on streams with many ties.
    @Test(arguments: [1, 5, 100, 1000])
    func topKEqualsFullSort(k: Int) {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            let n = Int.random(in: 0...700, using: &rng)
            let entries = (0..<n).map { i in
                Ranked(score: Double(Int.random(in: 0...20, using: &rng)) / 4, id: Int64.random(in: -50...50, using: &rng) * 1000 + Int64(i), slot: Int32(i))
            }
            var top = TopK(k: k)
            entries.forEach { top.push($0) }
            let expected = Array(entries.sorted { $0.ranksBefore($1) }.prefix(k))
            #expect(top.sorted() == expected)
        }
    }

    @Test func nanRanksLast() {
        var top = TopK(k: 2)
        top.push(Ranked(score: .nan, id: 1, slot: 0))
        top.push(Ranked(score: 0, id: 2, slot: 1))
        top.push(Ranked(score: -1, id: 3, slot: 2))
        #expect(top.sorted().map(\.id) == [2, 3])
    }
}
