import TwinTower
/// Walker/Vose alias table: O(1) draws from a fixed discrete distribution (user activity,
/// item popularity within a category, query popularity).
public struct AliasTable: Sendable {
    let probability: [Double]
    let alias: [Int32]

    public var count: Int { probability.count }

    /// - parameters:
    ///   - weights: non-negative weights, at least one positive.
    public init(weights: [Double]) {
        let n = weights.count
        precondition(n > 0, "AliasTable needs at least one weight")
        let total = weights.reduce(0, +)
        precondition(total > 0 && total.isFinite, "AliasTable needs a positive finite total weight")
        var scaled = weights.map { $0 * Double(n) / total }
        var prob = [Double](repeating: 1, count: n)
        var alias = [Int32](repeating: 0, count: n)
        for i in 0..<n { alias[i] = Int32(i) }
        var small: [Int] = []
        var large: [Int] = []
        for i in 0..<n { if scaled[i] < 1 { small.append(i) } else { large.append(i) } }
        while let s = small.popLast() {
            guard let l = large.last else { prob[s] = 1; continue }
            prob[s] = scaled[s]
            alias[s] = Int32(l)
            scaled[l] = (scaled[l] + scaled[s]) - 1
            if scaled[l] < 1 {
                large.removeLast()
                small.append(l)
            }
        }
        for l in large { prob[l] = 1 }
        self.probability = prob
        self.alias = alias
    }

    /// One draw, an index in `0..<count`.
    public func sample(_ rng: inout SplitMix64) -> Int {
        let column = rng.nextInt(below: probability.count)
        return rng.nextDouble() < probability[column] ? column : Int(alias[column])
    }
}
