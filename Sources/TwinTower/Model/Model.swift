import Foundation
import COpenSSL

/// A loaded twin-tower model: spec, embedding tables, dense statistics, both towers and the
/// per-task head biases `c_k`. A value type: training mutates a copy, serving shares one.
public struct Model: Sendable {
    public var spec: ModelSpec
    /// `emb.<field>` tables, `[buckets × dim]` row-major, shared by all tasks and both towers.
    public var embeddings: [String: [Float]]
    /// `dense.<side>.mean` / `.std`, one value per dense field of the side, in spec order.
    public var denseMean: [Side: [Float]]
    public var denseStd: [Side: [Float]]
    public var userTower: Tower
    public var itemTower: Tower
    /// `head.<task>.bias`, the `c_k` of the SPEC.
    public var headBias: [Float]
    /// SHA-256 (hex) of `weights.safetensors` as loaded or last saved; the item index records it.
    public var fingerprint: String

    public init(spec: ModelSpec, embeddings: [String: [Float]], denseMean: [Side: [Float]], denseStd: [Side: [Float]],
                userTower: Tower, itemTower: Tower, headBias: [Float], fingerprint: String = "") {
        self.spec = spec
        self.embeddings = embeddings
        self.denseMean = denseMean
        self.denseStd = denseStd
        self.userTower = userTower
        self.itemTower = itemTower
        self.headBias = headBias
        self.fingerprint = fingerprint
    }

    public var taskNames: [String] { spec.tasks.map(\.name) }
    public var d: Int { spec.architecture.d }

    public func tower(_ side: Side) -> Tower { side == .user ? userTower : itemTower }

    public func encoder(_ side: Side) -> FeatureEncoder {
        FeatureEncoder(side: side, spec: spec, embeddings: embeddings,
                       denseMean: denseMean[side] ?? [], denseStd: denseStd[side] ?? [])
    }

    public var chain: LogitChain { LogitChain(architecture: spec.architecture, headBias: headBias) }

    /// The user-query tower's outputs `u_k` for one request: `[T × d]` row-major.
    public func userVectors(_ row: FeatureRow) throws(FeatureError) -> [Float] {
        userTower.embed(try encoder(.user).encode(row))
    }

    /// Model-level probabilities for one (user, item) pair, straight from both towers
    /// (no index): used by tests and offline tools.
    public func probabilities(user: FeatureRow, item: FeatureRow) throws(FeatureError) -> [Float] {
        let u = try userVectors(user)
        let v = itemTower.embed(try encoder(.item).encode(item))
        let d = self.d
        let dots = (0..<headBias.count).map { k in (0..<d).reduce(Float(0)) { $0 + u[k * d + $1] * v[k * d + $1] } }
        return chain.probabilities(dots: dots)
    }
}

/// SHA-256 of a file's bytes, hex encoded (the model fingerprint).
public func sha256Hex(ofFile path: String) throws(FormatError) -> String {
    let file = try MappedFile(path: path)
    return sha256Hex(file.bytes)
}

public func sha256Hex(_ bytes: UnsafeRawBufferPointer) -> String {
    var digest = [UInt8](repeating: 0, count: 32)
    var length: UInt32 = 0
    let ok = digest.withUnsafeMutableBufferPointer { d in
        EVP_Digest(bytes.baseAddress ?? UnsafeRawPointer(d.baseAddress!), bytes.count, d.baseAddress, &length, EVP_sha256(), nil)
    }
    precondition(ok == 1 && length == 32, "EVP_Digest(sha256) failed")
    return digest.map { String(format: "%02x", $0) }.joined()
}
