import Fusion
import Testing
@testable import Training

/// tune-fusion says when its best point may not be the best (issue #27): on the grid's edge, or
/// resting on too few orders to tell neighbouring points apart.
@Suite struct TuneFusionWarningTests {
    static func result(_ grid: FusionGrid, best: (Int, Int, Int), k: Int = 20) -> FusionGridResult {
        FusionGridResult(grid: grid, k: k, wr: [Double?](repeating: 0.5, count: grid.pointCount),
                         best: grid.policy(alpha: best.0, beta: best.1, gamma: best.2), bestWR: 0.5,
                         bestIndex: (alpha: best.0, beta: best.1, gamma: best.2))
    }

    @Test func largestBetaOverAlphaIsAnEdge() {
        // One α: the best β is the largest tried.
        let one = FusionGrid(formula: .additive, alphas: [1], betas: [0, 10, 20])
        let w = TuneFusion.warnings(Self.result(one, best: (0, 2, 0)), orders: 5000)
        #expect(w.count == 1 && w[0].contains("largest β/α"), "\(w)")
        // The default grid: α = 0 (CTCVR alone) is the largest ratio there is.
        let g = FusionGrid.defaultAdditive(relevance: false)
        #expect(TuneFusion.warnings(Self.result(g, best: (0, 3, 0)), orders: 5000).first?.contains("largest β/α") == true)
        // β = 0: CTR alone, the smallest ratio.
        let low = TuneFusion.warnings(Self.result(g, best: (4, 0, 0)), orders: 5000)
        #expect(low.count == 1 && low[0].contains("smallest β/α"), "\(low)")
        // α = 1, β = 200 is not an edge there: α = 0.25, β = 200 (ratio 800) was tried.
        #expect(TuneFusion.warnings(Self.result(g, best: (4, 8, 0)), orders: 5000).isEmpty)
    }

    @Test func alphaAtTheTopWithBetaInsideIsNoEdge() {
        // α = 1, β = 20: the paper's point, inside the ratio range although α is the grid's largest.
        #expect(TuneFusion.warnings(Self.result(FusionGrid.defaultAdditive(relevance: false), best: (4, 5, 0)), orders: 5000).isEmpty)
        #expect(TuneFusion.warnings(Self.result(FusionGrid.defaultMultiplicative(), best: (5, 3, 0)), orders: 5000).isEmpty)
    }

    @Test func largestGammaIsAnEdge() {
        let g = FusionGrid.defaultAdditive(relevance: true)
        let w = TuneFusion.warnings(Self.result(g, best: (4, 5, g.gammas.count - 1)), orders: 5000)
        #expect(w.count == 1 && w[0].contains("γ"), "\(w)")
    }

    @Test func fewOrdersAreNamed() {
        let w = TuneFusion.warnings(Self.result(FusionGrid.defaultAdditive(relevance: false), best: (4, 5, 0)), orders: 118)
        #expect(w.count == 1 && w[0].contains("118 orders") && w[0].contains("0.85 %"), "\(w)")
    }
}
