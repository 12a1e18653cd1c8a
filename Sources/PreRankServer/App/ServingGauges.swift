import Fusion

/// Copies what a snapshot serves (models, fusion, canary share, live catalog, update log) into
/// the metrics gauges. Called whenever a snapshot is put in force, so `/metrics` never describes
/// a snapshot that is not serving.
struct ServingGauges: Sendable {
    let metrics: MetricsRegistry
    let catalog: LiveCatalog

    /// Everything `snap` serves.
    func publish(_ snap: ServingSnapshot) {
        publishCatalog(snap)
        var info = [Self.info(snap.primary, arm: "primary", fusion: snap.options.fusion)]
        if let canary = snap.canary { info.append(Self.info(canary, arm: "canary", fusion: snap.canaryOptions.fusion)) }
        metrics.setModelInfo(info)
        metrics.setCanaryShare(snap.canary == nil ? 0 : snap.config.canary?.share ?? 0)
    }

    /// The live catalog and update log only (an item change leaves models and fusion as they were).
    func publishCatalog(_ snap: ServingSnapshot) {
        metrics.setUpdateLog(catalog.logBytes.map {
            .init(bytes: $0, lastAppend: catalog.lastAppend?.timeIntervalSince1970 ?? 0, towerRows: catalog.towerRows)
        })
        metrics.setCatalog(snap.arms.map { arm, b in
            .init(arm: arm, baseItems: b.index.count, deltaItems: b.delta.upsertedCount, deletedItems: b.delta.deletedIDs.count,
                  sequence: b.delta.sequence)
        })
    }

    static func info(_ b: ServingBundle, arm: String, fusion: FusionPolicy) -> MetricsRegistry.ModelInfo {
        .init(arm: arm, version: b.version, fingerprint: b.model.fingerprint, dtype: b.index.dtype.rawValue,
              items: b.index.count, tasks: b.model.taskNames, fusion: fusion)
    }
}
