import Foundation
import StrictJSON
import TwinTower

/// Everything one request needs, loaded and validated together: config, the primary model and
/// index, the optional canary, the admin token. Immutable; a reload builds a new one off the
/// serving path and swaps the reference, so requests in flight finish on the one they started
/// with and a rejected reload leaves the old one serving.
public final class ServingSnapshot: Sendable {
    public let config: PreRankConfig
    public let options: ScoringOptions
    public let primary: ServingBundle
    public let canary: ServingBundle?
    /// Engine options of the canary arm: the primary's with the canary's fusion, when it has one.
    public let canaryOptions: ScoringOptions
    public let adminToken: String?
    public let loadedAt: Date

    init(config: PreRankConfig, options: ScoringOptions, primary: ServingBundle, canary: ServingBundle?, adminToken: String?,
         loadedAt: Date = Date()) {
        self.config = config
        self.options = options
        self.primary = primary
        self.canary = canary
        var c = options
        if let fusion = config.canary?.fusion { c.fusion = fusion.policy }
        self.canaryOptions = c
        self.adminToken = adminToken
        self.loadedAt = loadedAt
    }

    /// This snapshot with other bundles over the same files (a live-catalog change): config,
    /// token and `loadedAt` stay, so `/v1/model` still tells when files were last (re)loaded.
    public func with(primary: ServingBundle, canary: ServingBundle?) -> ServingSnapshot {
        ServingSnapshot(config: config, options: options, primary: primary, canary: canary, adminToken: adminToken, loadedAt: loadedAt)
    }

    /// The bundles with their arm names, primary first.
    public var arms: [(String, ServingBundle)] {
        [("primary", primary)] + (canary.map { [("canary", $0)] } ?? [])
    }

    /// Loads and checks config-named model, index, canary and token file.
    ///
    /// - parameters:
    ///   - cache: shares a model or index whose files are unchanged since the snapshot in force
    ///     (a config-only reload reads no model and maps no index); the caller commits it once
    ///     the new snapshot is in force, or discards it. Without one, everything is loaded.
    public static func load(config: PreRankConfig, parallelism: Int, cache: ServingCache? = nil) throws(ReloadError) -> ServingSnapshot {
        func bundle(_ paths: PreRankConfig.ModelPaths) throws(FormatError) -> ServingBundle {
            if let cache { return try cache.bundle(modelDirectory: paths.dir, indexPath: paths.index) }
            return try ServingBundle.load(modelDirectory: paths.dir, indexPath: paths.index)
        }
        let primary: ServingBundle
        do {
            primary = try bundle(config.model)
        } catch {
            throw ReloadError(key: "model", message: error.description)
        }
        var canary: ServingBundle?
        if let c = config.canary {
            do {
                canary = try c.model.map { paths throws(FormatError) in try bundle(paths) } ?? primary
            } catch {
                throw ReloadError(key: "canary.model", message: error.description)
            }
        }
        let token = try adminToken(config)
        return ServingSnapshot(config: config, options: ScoringPipeline.options(from: config, parallelism: parallelism),
                               primary: primary, canary: canary, adminToken: token)
    }

    /// The admin token named by `server.admin_token_file` (nil when the key is absent).
    static func adminToken(_ config: PreRankConfig) throws(ReloadError) -> String? {
        guard let path = config.server.adminTokenFile else { return nil }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ReloadError(key: "server.admin_token_file", message: "cannot read \(path)")
        }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.count >= 8 else {
            throw ReloadError(key: "server.admin_token_file", message: "\(path) holds a token shorter than 8 characters")
        }
        return trimmed
    }

    /// What `prerank validate-config` checks beyond the file itself: every file the server
    /// would load at start (model directories, indexes against their model's fingerprint, the
    /// admin token, the TLS certificate and key) opens and validates, without populating or
    /// copying the index. The same errors as a start-up or reload would give, naming the key.
    public static func check(config: PreRankConfig) throws(ReloadError) {
        for (key, paths) in [("model", config.model)] + (config.canary?.model.map { [("canary.model", $0)] } ?? []) {
            do {
                _ = try ServingBundle.load(modelDirectory: paths.dir, indexPath: paths.index, populate: false)
            } catch {
                throw ReloadError(key: key, message: error.description)
            }
        }
        _ = try adminToken(config)
        if let tls = config.server.tls {
            for (key, path) in [("server.tls.cert", tls.cert), ("server.tls.key", tls.key)] where !FileManager.default.isReadableFile(atPath: path) {
                throw ReloadError(key: key, message: "cannot read \(path)")
            }
        }
    }

    /// Engine options of an arm ("canary" or anything else: the primary's).
    public func options(arm: String?) -> ScoringOptions { arm == "canary" ? canaryOptions : options }

    /// The arm serving `request`: the canary for a stable share of request or user ids.
    func select(_ request: PreRankRequest) -> (ServingBundle, String?) {
        guard let canary, let c = config.canary else { return (primary, nil) }
        let key: String?
        switch c.key {
        case .requestID: key = request.requestID
        case .userID:
            switch request.user["user_id"] {
            case .string(let s)?: key = s
            case .integer(let i)?: key = String(i)
            default: key = nil
            }
        }
        guard let key else { return (primary, "primary") }
        return Self.routesToCanary(key: key, share: c.share) ? (canary, "canary") : (primary, "primary")
    }

    /// Whether `key` (a request or user id) goes to a canary of `share`: a pure function of the
    /// two, so one key gets the same arm on every replica and after every restart, and a larger
    /// share only adds keys to the canary. The `arm␟` prefix keeps the choice independent of the
    /// request-log sample, which hashes the bare request id with the same `StableFraction`.
    ///
    /// Since issue #27 the hash is finalised (splitmix64); before, FNV-1a's raw top bits routed
    /// sequential ids far from the share. Canaries running across that upgrade re-bucket once.
    public static func routesToCanary(key: String, share: Double) -> Bool {
        StableFraction.of("arm\u{1F}" + key) < share
    }
}
