import Foundation
import Testing
@testable import TwinTower

@Suite struct ModelMathTests {
    /// Known FNV-1a 64 values (the published test vectors for "" and "a").
    @Test func fnvMatchesPublishedVectors() {
        #expect(FeatureHasher.fnv1a([UInt8]()) == 0xcbf2_9ce4_8422_2325)
        #expect(FeatureHasher.fnv1a(Array("a".utf8)) == 0xaf63_dc4c_8601_ec8c)
        #expect(FeatureHasher.fnv1a(Array("foobar".utf8)) == 0x8594_4171_f739_67e8)
    }

    @Test func integersAndTheirDecimalTextHashAlike() {
        let seed = FeatureHasher.fieldSeed("user_id")
        #expect(FeatureHasher.bucket(seed: seed, value: Int64(42), buckets: 1009)
                == FeatureHasher.bucket(field: "user_id", value: "42", buckets: 1009))
        let whole = FeatureHasher.fnv1a(Array("user_id\u{1F}42".utf8)) % 1009
        #expect(FeatureHasher.bucket(field: "user_id", value: "42", buckets: 1009) == Int(whole))
    }

    func spec(chain: ChainKind = .additive, fr: Bool = true, lr: Bool = true, clamp: Bool = false, hidden: [Int] = [5, 4]) -> ModelSpec {
        ModelSpec(version: "t", tasks: [.init(name: "ctr", label: "click"), .init(name: "atcr", label: "cart"), .init(name: "ctcvr", label: "order")],
                  architecture: Architecture(hidden: hidden, d: 3, fr: fr, lr: lr, clamp: clamp, chain: chain),
                  features: [.init(name: "u", side: .user, kind: .categorical, buckets: 11, dim: 2),
                             .init(name: "q", side: .user, kind: .multi, buckets: 13, dim: 2),
                             .init(name: "age", side: .user, kind: .dense),
                             .init(name: "i", side: .item, kind: .categorical, buckets: 17, dim: 3)])
    }

    @Test func encoderBlocksFollowTheSpec() throws {
        var rng = SplitMix64(seed: 3)
        let model = ModelStore.random(spec: spec(), using: &rng)
        let enc = model.encoder(.user)
        #expect(enc.width == 5)
        let row = FeatureRow(values: ["u": .integer(7), "q": .array([.string("a"), .string("b"), .string("")]), "age": .number(30)])
        let x = try enc.encode(row)
        let table = model.embeddings["u"]!
        let ub = FeatureHasher.bucket(field: "u", value: "7", buckets: 11)
        #expect(Array(x[0..<2]) == Array(table[(ub * 2)..<(ub * 2 + 2)]))
        let q = model.embeddings["q"]!
        let a = FeatureHasher.bucket(field: "q", value: "a", buckets: 13), b = FeatureHasher.bucket(field: "q", value: "b", buckets: 13)
        for j in 0..<2 { #expect(abs(x[2 + j] - (q[a * 2 + j] + q[b * 2 + j]) / 2) < 1e-6) }
        #expect(abs(x[4] - (30 - model.denseMean[.user]![0]) / model.denseStd[.user]![0]) < 1e-5)
        // Missing values give zeros.
        #expect(try enc.encode(FeatureRow()) .prefix(4).allSatisfy { $0 == 0 })
        #expect(try enc.encode(FeatureRow())[4] == 0)
    }

    @Test func encoderErrorsNameTheField() throws {
        var rng = SplitMix64(seed: 3)
        let enc = ModelStore.random(spec: spec(), using: &rng).encoder(.user)
        let bad = FeatureRow(values: ["age": .string("old")], sources: ["age": "user"])
        #expect(throws: FeatureError(field: "user.age", message: "a dense value must be a number, not a string")) { try enc.encode(bad) }
        let frac = FeatureRow(values: ["q": .array([.string("x"), .number(1.5)])], sources: ["q": "query"])
        #expect(throws: FeatureError.self) { try enc.encode(frac) }
        do { _ = try enc.encode(frac) } catch { #expect(error.field == "query.q[1]") }
    }

    /// The batched forward pass equals a scalar re-implementation of the SPEC's equations.
    @Test(arguments: [true, false])
    func towerForwardMatchesScalarEquations(fr: Bool) throws {
        var rng = SplitMix64(seed: 9)
        let tower = Tower(inputWidth: 6, hidden: [5, 4], d: 3, tasks: 3, featureResidual: fr, using: &rng)
        let batch = 7
        let x = (0..<(batch * 6)).map { _ in Float.random(in: -1...1, using: &rng) }
        let acts = x.withUnsafeBufferPointer { tower.forward($0, batch: batch) }
        for b in 0..<batch {
            let input = Array(x[(b * 6)..<((b + 1) * 6)])
            var previous: [[Float]] = []
            for k in 0..<3 {
                var o = input
                var current: [[Float]] = []
                for (l, layer) in tower.layers[k].enumerated() {
                    var y = (0..<layer.outDim).map { r in
                        layer.bias[r] + (0..<layer.inDim).reduce(Float(0)) { $0 + layer.weight[r * layer.inDim + $1] * o[$1] }
                    }
                    if l < tower.layers[k].count - 1 {
                        y = y.map { max($0, 0) }
                        if fr && k > 0 { y = zip(y, previous[l]).map(+) }
                    }
                    current.append(y)
                    o = y
                }
                previous = current
                let got = Array(acts.final(task: k)[(b * 3)..<((b + 1) * 3)])
                for j in 0..<3 { #expect(abs(got[j] - o[j]) < 1e-5) }
            }
        }
    }

    @Test func logitChainVariants() {
        let dots: [Float] = [0.5, 1.0, -0.25]
        let heads: [Float] = [-1, 0.5, -0.5]
        func arch(_ chain: ChainKind, lr: Bool, clamp: Bool) -> Architecture {
            Architecture(hidden: [], d: 1, fr: false, lr: lr, clamp: clamp, chain: chain)
        }
        func sig(_ x: Float) -> Float { 1 / (1 + exp(-x)) }
        let r0: Float = -0.5, r1: Float = 1.5, r2: Float = -0.75
        let resflow = LogitChain(architecture: arch(.additive, lr: true, clamp: false), headBias: heads).probabilities(dots: dots)
        #expect(abs(resflow[0] - sig(r0)) < 1e-6 && abs(resflow[1] - sig(r0 + r1)) < 1e-6 && abs(resflow[2] - sig(r0 + r1 + r2)) < 1e-6)
        let clamped = LogitChain(architecture: arch(.additive, lr: true, clamp: true), headBias: heads).probabilities(dots: dots)
        #expect(abs(clamped[1] - sig(r0)) < 1e-6 && abs(clamped[2] - sig(r0 + r2)) < 1e-6)
        #expect(clamped[0] >= clamped[1] && clamped[1] >= clamped[2])
        let nse = LogitChain(architecture: arch(.additive, lr: false, clamp: false), headBias: heads).probabilities(dots: dots)
        #expect(abs(nse[1] - sig(r1)) < 1e-6)
        let esmm = LogitChain(architecture: arch(.multiplicative, lr: false, clamp: false), headBias: heads).probabilities(dots: dots)
        #expect(abs(esmm[2] - sig(r0) * sig(r1) * sig(r2)) < 1e-6)
    }

    @Test func saveAndLoadRoundTripAndFingerprint() throws {
        var rng = SplitMix64(seed: 5)
        let model = ModelStore.random(spec: spec(chain: .multiplicative, fr: false, lr: false, clamp: true), using: &rng)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m-\(UUID().uuidString)").path
        let saved = try ModelStore.save(model, directory: dir)
        let loaded = try ModelStore.load(directory: dir)
        #expect(loaded.fingerprint == saved.fingerprint && loaded.fingerprint.count == 64)
        #expect(loaded.userTower == model.userTower && loaded.itemTower == model.itemTower)
        #expect(loaded.embeddings == model.embeddings && loaded.headBias == model.headBias)
        #expect(loaded.spec == model.spec)
    }
}
