import Foundation
import Testing
import TwinTower
@testable import Training

/// The analytic backward pass (towers, feature residual, chain, clamp, weighted BCE) against
/// central finite differences of the loss computed by the shared forward pass.
@Suite struct TrainGradientTests {
    struct Setup {
        var user: Tower
        var item: Tower
        var chain: LogitChain
        var xu: [Float]
        var xi: [Float]
        var labels: [[Float]]
        let batch = 4
        let d = 3
        let posWeight: [Float] = [1, 3, 7]
    }

    func make(_ arch: Architecture) -> Setup {
        var rng = SplitMix64(seed: 42)
        let user = Tower(inputWidth: 5, hidden: arch.hidden, d: 3, tasks: 3, featureResidual: arch.fr, using: &rng)
        let item = Tower(inputWidth: 4, hidden: arch.hidden, d: 3, tasks: 3, featureResidual: arch.fr, using: &rng)
        let xu = (0..<20).map { _ in Float.random(in: -1...1, using: &rng) }
        let xi = (0..<16).map { _ in Float.random(in: -1...1, using: &rng) }
        let labels: [[Float]] = [[1, 1, 0], [0, 0, 0], [1, 1, 1], [1, 0, 0]]
        return Setup(user: user, item: item, chain: LogitChain(architecture: arch, headBias: [-0.3, 0.4, -0.2]),
                     xu: xu, xi: xi, labels: labels)
    }

    func loss(_ s: Setup) -> Double {
        let ua = s.xu.withUnsafeBufferPointer { s.user.forward($0, batch: s.batch) }
        let ia = s.xi.withUnsafeBufferPointer { s.item.forward($0, batch: s.batch) }
        var total = 0.0
        var g = [Float](repeating: 0, count: 3)
        for i in 0..<s.batch {
            let dots = (0..<3).map { k in (0..<s.d).reduce(Float(0)) { $0 + ua.final(task: k)[i * s.d + $1] * ia.final(task: k)[i * s.d + $1] } }
            total += Double(ChainLoss.gradient(chain: s.chain, dots: dots, labels: s.labels[i], posWeight: s.posWeight, grad: &g))
        }
        return total
    }

    func analytic(_ s: Setup) -> TowerGradients {
        let ua = s.xu.withUnsafeBufferPointer { s.user.forward($0, batch: s.batch, keepPreResidual: true) }
        let ia = s.xi.withUnsafeBufferPointer { s.item.forward($0, batch: s.batch, keepPreResidual: true) }
        var gu = [[Float]](repeating: [Float](repeating: 0, count: s.batch * s.d), count: 3)
        var g = [Float](repeating: 0, count: 3)
        for i in 0..<s.batch {
            let dots = (0..<3).map { k in (0..<s.d).reduce(Float(0)) { $0 + ua.final(task: k)[i * s.d + $1] * ia.final(task: k)[i * s.d + $1] } }
            _ = ChainLoss.gradient(chain: s.chain, dots: dots, labels: s.labels[i], posWeight: s.posWeight, grad: &g)
            for k in 0..<3 { for j in 0..<s.d { gu[k][i * s.d + j] = g[k] * ia.final(task: k)[i * s.d + j] } }
        }
        var grads = TowerGradients(zerosLike: s.user)
        _ = TowerBackward.run(tower: s.user, x: s.xu, batch: s.batch, acts: ua, gradFinal: gu, into: &grads)
        return grads
    }

    @Test(arguments: ["resflow+clamp", "nse", "esmm", "nse+fr"])
    func backwardMatchesFiniteDifferences(name: String) {
        let base = name.replacingOccurrences(of: "+clamp", with: "")
        guard let arch = Architecture.named(base, hidden: [6, 4], d: 3, clamp: name.hasSuffix("+clamp")) else {
            Issue.record("unknown arch"); return
        }
        let s = make(arch)
        let grads = analytic(s)
        var checked = 0
        for k in 0..<3 {
            for l in 0..<3 {
                for idx in stride(from: 0, to: s.user.layers[k][l].weight.count, by: 5) {
                    func quotient(_ eps: Float) -> Double {
                        var plus = s, minus = s
                        plus.user.layers[k][l].weight[idx] += eps
                        minus.user.layers[k][l].weight[idx] -= eps
                        return (loss(plus) - loss(minus)) / Double(2 * eps)
                    }
                    let numeric = quotient(1e-2)
                    // A ReLU kink inside ±eps makes the difference quotient meaningless there:
                    // such coordinates show up as disagreement between two step sizes.
                    if abs(numeric - quotient(4e-3)) > 1e-2 * max(1, abs(numeric)) { continue }
                    let a = Double(grads.weight[k][l][idx])
                    #expect(abs(numeric - a) <= 2e-2 * max(1, abs(numeric)), "\(name) task \(k) block \(l) weight \(idx): analytic \(a), numeric \(numeric)")
                    checked += 1
                }
            }
        }
        #expect(checked > 20)
    }
    /// The bias gradient's column sums (eight columns in a register) equal the scalar loop bit
    /// for bit, for widths with and without a tail.
    @Test(arguments: [1, 7, 8, 13, 64, 67])
    func columnSumsEqualTheScalarReference(columns: Int) {
        var rng = SplitMix64(seed: UInt64(columns))
        let rows = 37
        let g = (0..<(rows * columns)).map { _ in Float.random(in: -3...3, using: &rng) }
        let start = (0..<columns).map { _ in Float.random(in: -1...1, using: &rng) }
        var reference = start
        for i in 0..<rows { for j in 0..<columns { reference[j] += g[i * columns + j] } }
        var fast = start
        g.withUnsafeBufferPointer { gp in
            fast.withUnsafeMutableBufferPointer { TowerBackward.addColumnSums(gp.baseAddress!, rows: rows, columns: columns, into: $0.baseAddress!) }
        }
        #expect(fast.map(\.bitPattern) == reference.map(\.bitPattern))
    }
}
