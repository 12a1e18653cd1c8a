import Foundation
import Logging
import TwinTower

/// The live catalog behind `POST /admin/items` (issue #15): validates a change against every
/// loaded model, appends it to the update log (fsync'd), and gives the snapshot that serves it;
/// replays the log onto the bundles of a freshly loaded snapshot (start, reload).
///
/// Used from one queue at a time (the app's serial reload queue, or start-up before it exists):
/// changes and reloads are serialised, so a reload never loses a change applied while it loaded
/// and sequence numbers are handed out in log order.
public final class LiveCatalog: @unchecked Sendable {
    // All state below is touched only by the one queue that owns this object.
    private var writer: UpdateLogWriter?
    private var nextSequence: UInt64 = 1
    private let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
    }

    /// The update log's path (nil: `model.updates` is not set).
    public var logPath: String? { writer?.path }

    /// What `POST /admin/items` answers.
    public struct Applied: Sendable {
        public var upserted: Int
        public var deleted: Int
        /// Items the primary serves now (base minus hidden plus upserted).
        public var items: Int
        public var sequence: UInt64
        public var seconds: Double
    }

    /// `snap` with the update log (`config.model.updates`) replayed onto its bundles.
    ///
    /// A bundle over the same model and the same index object as `previous`'s keeps that
    /// bundle's delta (nothing to replay: changes and reloads share one queue); any other bundle
    /// gets the log's records newer than its base index's `updates_sequence`, in order. A row
    /// that the (new) model cannot encode is skipped with a warning: it was accepted by the model
    /// in force when it arrived, and refusing the reload for it would keep serving that one.
    public func attach(_ snap: ServingSnapshot, previous: ServingSnapshot?) throws(ReloadError) -> ServingSnapshot {
        guard let path = snap.config.model.updates else {
            writer = nil
            return snap
        }
        let opened: Bool
        if writer?.path != path {
            do { writer = try UpdateLogWriter(path: path) } catch {
                throw ReloadError(key: "model.updates", message: error.description)
            }
            opened = true
            if let torn = writer!.opened.torn {
                logger.warning("update log: dropped a torn last record (a crash while it was written); everything before it is kept",
                               metadata: ["path": "\(path)", "where": "\(torn)"])
            }
        } else {
            opened = false
        }
        var records: [UpdateLog.Record]?
        func log() throws(ReloadError) -> [UpdateLog.Record] {
            if let records { return records }
            // A log this server has been writing is re-read from disk: it holds everything applied.
            let read: [UpdateLog.Record]
            if opened { read = writer!.opened.records } else {
                do { read = try UpdateLog.read(path: path).records } catch {
                    throw ReloadError(key: "model.updates", message: error.description)
                }
            }
            records = read
            return read
        }
        var next = nextSequence
        if opened { next = max(next, (writer!.opened.records.last?.sequence ?? 0) + 1) }
        let started = Date()
        var replayed: [(String, Int)] = []
        var bundles: [ServingBundle] = []
        for (arm, bundle) in snap.arms {
            next = max(next, ServingBundle.baseSequence(bundle.index) + 1)
            let before = previous?.arms.first { $0.0 == arm }?.1
            if !opened, let before, before.index === bundle.index, before.model.fingerprint == bundle.model.fingerprint {
                bundles.append(bundle.with(delta: before.delta))
                continue
            }
            let base = ServingBundle.baseSequence(bundle.index)
            // Every record's rows go through the tower first, then into the delta at once (one
            // id table build for the whole log).
            var changes: [ItemDelta.Change] = []
            for record in try log() where record.sequence > base {
                let change: CatalogChange
                do { change = try ItemChangeCodec.decode(record.payload) } catch {
                    throw ReloadError(key: "model.updates", message: "\(path): record \(record.sequence) at byte \(record.offset) is not a change: \(error.message)")
                }
                changes.append(embed(change, sequence: record.sequence, bundle: bundle, arm: arm))
            }
            replayed.append((arm, changes.count))
            bundles.append(bundle.with(delta: ItemDelta(sequence: base).applying(changes, base: bundle.index)))
        }
        nextSequence = next
        if !replayed.isEmpty {
            logger.notice("update log replayed", metadata: [
                "path": "\(path)", "records": "\(replayed.map { "\($0.0)=\($0.1)" }.joined(separator: ","))",
                "seconds": "\(String(format: "%.3f", Date().timeIntervalSince(started)))",
                "delta_items": "\(bundles[0].delta.upsertedCount)", "deleted": "\(bundles[0].delta.deletedIDs.count)",
            ])
        }
        return snap.with(primary: bundles[0], canary: bundles.count > 1 ? bundles[1] : nil)
    }

    /// A replayed change with its rows' vectors: rows that do not encode are skipped (see `attach`).
    private func embed(_ change: CatalogChange, sequence: UInt64, bundle: ServingBundle, arm: String) -> ItemDelta.Change {
        var upserts = change.upserts
        var vectors: [Float]
        do {
            vectors = try ItemVectors.embed(upserts.map(\.row), encoder: bundle.itemEncoder, tower: bundle.itemTower)
        } catch {
            // Rare: one row at a time, to keep the ones that encode.
            vectors = []
            var kept: [CatalogChange.Upsert] = []
            for u in upserts {
                do {
                    vectors += try ItemVectors.embed([u.row], encoder: bundle.itemEncoder, tower: bundle.itemTower)
                    kept.append(u)
                } catch {
                    logger.warning("update log: a row the model cannot encode is skipped",
                                   metadata: ["sequence": "\(sequence)", "item_id": "\(u.id)", "arm": "\(arm)", "reason": "\(error.description)"])
                }
            }
            upserts = kept
        }
        return ItemDelta.Change(ids: upserts.map(\.id), vectors: vectors, deletes: change.deletes, sequence: sequence)
    }

    /// Validates `change` against every arm of `snap` (nothing is applied when a row fails),
    /// appends it to the log and fsyncs, and returns the snapshot that serves it.
    ///
    /// - throws: `APIError` 400 naming `upsert[i].<field>` for a row a model cannot encode;
    ///   403 without `model.updates`; 500 when the log cannot be written (nothing applied).
    public func apply(_ change: CatalogChange, to snap: ServingSnapshot) throws(APIError) -> (ServingSnapshot, Applied) {
        guard let writer else {
            throw APIError(status: 403, code: "updates_disabled", message: "no model.updates configured: the live catalog needs an update log")
        }
        let started = Date()
        var vectors: [[Float]] = []
        for (_, bundle) in snap.arms {
            do {
                vectors.append(try ItemVectors.embed(change.upserts.map(\.row), encoder: bundle.itemEncoder, tower: bundle.itemTower))
            } catch {
                throw APIError.badField(error.field, error.message)
            }
        }
        let sequence = nextSequence
        var logged = change
        logged.sequence = sequence
        do { try writer.append(sequence: sequence, payload: ItemChangeCodec.encode(logged)) } catch {
            logger.error("update log: append failed; the change is not applied", metadata: ["reason": "\(error.description)"])
            throw APIError(status: 500, code: "update_log_failed", message: error.description)
        }
        nextSequence = sequence + 1
        let ids = change.upserts.map(\.id)
        let bundles = zip(snap.arms, vectors).map { arm, v in
            arm.1.with(delta: arm.1.delta.applying(ids: ids, vectors: v, deletes: change.deletes, sequence: sequence, base: arm.1.index))
        }
        let next = snap.with(primary: bundles[0], canary: bundles.count > 1 ? bundles[1] : nil)
        return (next, Applied(upserted: ids.count, deleted: change.deletes.count, items: bundles[0].itemCount, sequence: sequence,
                              seconds: Date().timeIntervalSince(started)))
    }
}
