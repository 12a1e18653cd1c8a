import Foundation
import Testing
@testable import PreRankServer

/// The canary gets the configured share of keys, whatever they look like (issue #27): FNV-1a's
/// raw top bits routed 0 % of `u1…u1000` and 60 % of `user-0…user-999` to canaries of 10 % and 50 %.
@Suite struct CanaryRoutingTests {
    /// Key sets an integration really sends: sequential, prefixed, numeric and random ids.
    static let keySets: [(String, [String])] = {
        var uuids = (0..<10_000).map { _ in UUID().uuidString }
        uuids.sort()  // order does not matter; sorting keeps failure output readable
        return [
            ("u1…u1000", (1...1000).map { "u\($0)" }),
            ("user-0…user-999", (0..<1000).map { "user-\($0)" }),
            ("r-1…r-10000", (1...10_000).map { "r-\($0)" }),
            ("1…10000", (1...10_000).map { String($0) }),
            ("random UUIDs", uuids),
        ]
    }()

    @Test(arguments: [0.01, 0.05, 0.1, 0.5, 0.9])
    func routedShareIsWithinBinomialErrorOfTheConfiguredShare(share: Double) {
        for (name, keys) in Self.keySets {
            let n = Double(keys.count)
            let routed = Double(keys.filter { ServingSnapshot.routesToCanary(key: $0, share: share) }.count) / n
            // Four standard deviations of a binomial proportion, plus one key of granularity.
            let tolerance = 4 * (share * (1 - share) / n).squareRoot() + 1 / n
            #expect(abs(routed - share) <= tolerance, "\(name): \(routed) routed to a canary of share \(share) (±\(tolerance))")
        }
    }

    /// The walkthrough's case: 0 of u1…u200 went to a 10 % canary.
    @Test func theWalkthroughUsersReachA10PercentCanary() {
        let routed = (1...1000).filter { ServingSnapshot.routesToCanary(key: "u\($0)", share: 0.1) }.count
        #expect((70...130).contains(routed), "\(routed) of 1000")
    }

    /// A pure function of key and share: the same answer every call (and in every process, since
    /// nothing is seeded: the fixed values below were computed once and hold across runs).
    @Test func routingIsStablePerKeyAndNested() {
        for k in (1...2000).map({ "r-\($0)" }) {
            let f = StableFraction.of("arm\u{1F}" + k)
            #expect(ServingSnapshot.routesToCanary(key: k, share: 0.3) == ServingSnapshot.routesToCanary(key: k, share: 0.3))
            #expect(ServingSnapshot.routesToCanary(key: k, share: 0.3) == (f < 0.3))
            // Growing the share only adds keys: a key in the 10 % canary stays in the 30 % one.
            if ServingSnapshot.routesToCanary(key: k, share: 0.1) { #expect(ServingSnapshot.routesToCanary(key: k, share: 0.3)) }
        }
        // Fixed points: a per-process seed or a changed hash would move these.
        #expect(StableFraction.of("") == Double(Self.finalised(0xCBF2_9CE4_8422_2325) >> 11) * 0x1p-53)
        #expect(abs(StableFraction.of("u1") - Self.reference("u1")) == 0)
    }

    /// Routing and request-log sampling hash the same id: they must not pick the same requests,
    /// or the request log of a 1 % sample would be all canary for a 5 % canary.
    @Test func routingIsIndependentOfRequestLogSampling() {
        let ids = (1...20_000).map { "r-\($0)" }
        let sampled = ids.filter { RequestLog.sample(requestID: $0, rate: 0.1) }
        let canaryAmongSampled = Double(sampled.filter { ServingSnapshot.routesToCanary(key: $0, share: 0.05) }.count) / Double(sampled.count)
        let n = Double(sampled.count)
        #expect(abs(canaryAmongSampled - 0.05) <= 4 * (0.05 * 0.95 / n).squareRoot() + 1 / n, "\(canaryAmongSampled) of \(sampled.count)")
    }

    /// splitmix64's finaliser, written out independently of `StableFraction`.
    static func finalised(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// FNV-1a 64 then the finaliser, from the published constants.
    static func reference(_ s: String) -> Double {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return Double(finalised(h) >> 11) * 0x1p-53
    }
}
