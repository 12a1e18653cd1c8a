import TwinTower
/// Solves the stage intercepts so that, over a calibration sample of requests drawn from the
/// world's own request distribution (random stream `calibration`, independent of the written
/// requests), the mean true probabilities equal the targets:
///
///     mean σ(b_click + z_click)                          = targetCTR
///     mean σ(b_click + z_click)·σ(b_cart + z_cart)       = targetCartRate
///     mean P(cart)·σ(b_order + z_order)                  = targetCTCVR
///
/// Each mean is increasing in its own intercept, so three bisections in turn solve it exactly.
enum Calibration {
    static func solve(world: World) -> Intercepts {
        let config = world.config
        var sampler = ImpressionSampler(world: world)
        var request = sampler.makeRequest()
        var zClick: [Double] = [], zCart: [Double] = [], zOrder: [Double] = []
        let n = config.calibrationRequests * config.candidates
        zClick.reserveCapacity(n); zCart.reserveCapacity(n); zOrder.reserveCapacity(n)
        let zero = Intercepts(click: 0, cart: 0, order: 0)
        for r in 0..<config.calibrationRequests {
            var rng = SplitMix64(seed: config.seed, stream: RandomStream.calibration.rawValue, index: UInt64(r))
            sampler.drawRequest(&rng, into: &request, intercepts: zero, withLabels: false)
            for imp in request.impressions {
                let z = sampler.logits(user: request.user, query: request.query, item: imp.item, relevance: imp.relevance)
                zClick.append(z.click); zCart.append(z.cart); zOrder.append(z.order)
            }
        }
        let count = Double(zClick.count)

        func bisect(_ target: Double, _ mean: (Double) -> Double) -> Double {
            var lo = -40.0, hi = 40.0
            for _ in 0..<48 {
                let mid = (lo + hi) / 2
                if mean(mid) < target { lo = mid } else { hi = mid }
            }
            return (lo + hi) / 2
        }
        let bClick = bisect(config.targetCTR) { b in
            var s = 0.0
            for z in zClick { s += sigmoid(b + z) }
            return s / count
        }
        let pClick = zClick.map { sigmoid(bClick + $0) }
        let bCart = bisect(config.targetCartRate) { b in
            var s = 0.0
            for j in 0..<zCart.count { s += pClick[j] * sigmoid(b + zCart[j]) }
            return s / count
        }
        let pCart = (0..<zCart.count).map { pClick[$0] * sigmoid(bCart + zCart[$0]) }
        let bOrder = bisect(config.targetCTCVR) { b in
            var s = 0.0
            for j in 0..<zOrder.count { s += pCart[j] * sigmoid(b + zOrder[j]) }
            return s / count
        }
        return Intercepts(click: bClick, cart: bCart, order: bOrder)
    }
}
