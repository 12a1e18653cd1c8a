import Catalog
import Foundation
import Logging
import StrictJSON
import TwinTower

/// The live catalog behind `POST /admin/items` (issue #15): validates a change against every
/// loaded model, appends it to the update log (fsync'd), and gives the snapshot that serves it;
/// replays the log onto the bundles of a freshly loaded snapshot (start, reload).
///
/// Used from one queue at a time (the app's serial reload queue, or start-up before it exists):
/// changes and reloads are serialised, so a reload never loses a change applied while it loaded
/// and sequence numbers are handed out in log order.
///
/// **The log follows its path** (issue #21). Before every append and on every reload the writer
/// checks that the file at `model.updates` is still the one it has open, as it left it
/// (`UpdateLogWriter.check`). When it is not:
/// - the path holds no records (the log was moved or rotated away, removed, or truncated): a fresh
///   log is started there, carrying the records newer than the oldest served base from the old
///   file when it is still intact (a move keeps the inode), and sequences continue from the
///   serving one. A truncated file cannot be carried: that is safe only when every served delta is
///   already in its base (a folded log), otherwise changes are refused (503) until a reload;
/// - the path holds records (a backup restored, another log put there): changes are refused with
///   503 `update_log_changed` until a reload, which replays the log now at the path.
/// A reload whose config names another log file treats it the same way: an empty or missing one
/// gets the served records carried over; one holding records is opened and replayed.
/// Either way no change is answered 200 and then written where no restart reads it.
///
/// **Work done once** (issue #21): arms that serve the same index object with the same model (a
/// fusion-only canary shares the primary's bundle) share one delta: each change is embedded by
/// one item tower pass and applied once, and a replay runs once (`towerRows` counts the rows).
public final class LiveCatalog: @unchecked Sendable {
    // All state below is touched only by the one queue that owns this object.
    private var writer: UpdateLogWriter?
    /// Set while changes are refused until a reload: why (the 503's message).
    private var blocked: String?
    private var nextSequence: UInt64 = 1
    private let logger: Logger
    /// Rows sent through an item tower since start (changes and replays): one per row per
    /// distinct model and index, however many arms serve it.
    public private(set) var towerRows = 0

    public init(logger: Logger) {
        self.logger = logger
    }

    /// The update log's path (nil: `model.updates` is not set).
    public var logPath: String? { writer?.path }

    /// Bytes of the update log this server writes (nil: none open).
    public var logBytes: Int? { writer?.size }

    /// When the last change was appended (nil: none since start).
    public private(set) var lastAppend: Date?

    /// What `POST /admin/items` answers.
    public struct Applied: Sendable {
        public var upserted: Int
        public var deleted: Int
        /// Deletes of ids no served arm holds: answered, not recorded.
        public var notFound: Int
        /// Items the primary serves now (base minus hidden plus upserted).
        public var items: Int
        public var sequence: UInt64
        public var seconds: Double
    }

    /// Arms that can share one delta: the same index object and model.
    private struct Group {
        var bundle: ServingBundle
        var arms: [Int]
    }

    private static func groups(_ arms: [(String, ServingBundle)]) -> [Group] {
        var out: [Group] = []
        for (i, (_, b)) in arms.enumerated() {
            if let g = out.firstIndex(where: { $0.bundle.index === b.index && $0.bundle.model.fingerprint == b.model.fingerprint }) {
                out[g].arms.append(i)
            } else {
                out.append(Group(bundle: b, arms: [i]))
            }
        }
        return out
    }

    /// `snap` with its arms' bundles given the deltas of `groups` (arms that shared one bundle
    /// object share the new one too).
    private static func snapshot(_ snap: ServingSnapshot, groups: [Group], deltas: [ItemDelta]) -> ServingSnapshot {
        let arms = snap.arms
        var bundles = [ServingBundle?](repeating: nil, count: arms.count)
        for (g, delta) in zip(groups, deltas) {
            var made: [(ServingBundle, ServingBundle)] = []
            for a in g.arms {
                let old = arms[a].1
                if let same = made.first(where: { $0.0 === old }) {
                    bundles[a] = same.1
                } else {
                    let new = old.with(delta: delta)
                    made.append((old, new))
                    bundles[a] = new
                }
            }
        }
        return snap.with(primary: bundles[0]!, canary: bundles.count > 1 ? bundles[1]! : nil)
    }

    /// `snap` with the update log (`config.model.updates`) replayed onto its bundles.
    ///
    /// A bundle over the same model and the same index object as one of `previous`'s keeps that
    /// bundle's delta (nothing to replay: changes and reloads share one queue); any other bundle
    /// gets the log's records newer than its base index's `updates_sequence`, in order. A row
    /// that the (new) model cannot encode is skipped with a warning: it was accepted by the model
    /// in force when it arrived, and refusing the reload for it would keep serving that one.
    /// A log whose file changed under the server (see the type's doc) is followed or reopened
    /// here; a log reopened is replayed onto every bundle.
    public func attach(_ snap: ServingSnapshot, previous: ServingSnapshot?) throws(ReloadError) -> ServingSnapshot {
        guard let path = snap.config.model.updates else {
            writer?.close()
            writer = nil
            blocked = nil
            return snap
        }
        // Non-nil: the log was (re)opened now, and every bundle replays it.
        var reopened: UpdateLog.Contents?
        if let w = writer, w.path == path, blocked == nil {
            if let reason = w.check() {
                if case .refused(let why) = follow(reason: reason, to: path, serving: previous?.arms.map(\.1) ?? []) {
                    logger.warning("update log: reloading replays the log now at the path", metadata: ["path": "\(path)", "reason": "\(why)"])
                    reopened = try open(path)
                }
            }
        } else if let w = writer, blocked == nil, !w.isOpen(path),
                  case .followed = follow(reason: "model.updates now names \(path) instead of \(w.path)", to: path,
                                          serving: previous?.arms.map(\.1) ?? []) {
            // A new, empty log file named by the config: the served changes were carried into it.
        } else {
            reopened = try open(path)
        }
        do throws(ReloadError) {
            return try replay(snap, previous: reopened == nil ? previous : nil, records: reopened?.records, path: path)
        } catch {
            // The log may already be the one at the path while the old snapshot keeps serving:
            // refuse changes until a reload succeeds rather than log them under the wrong deltas.
            if reopened != nil { blocked = "the last reload failed (\(error.message)); reload again to accept changes" }
            throw error
        }
    }

    /// Opens (and locks) the log at `path` as the one written from now on.
    private func open(_ path: String) throws(ReloadError) -> UpdateLog.Contents {
        // Our own lock on the same file would refuse the new descriptor.
        if let w = writer, w.isOpen(path) {
            w.close()
            writer = nil
        }
        let opened: (UpdateLogWriter, UpdateLog.Contents)
        do { opened = try UpdateLogWriter.open(path: path) } catch {
            // Our writer was closed for this: refuse changes (503) rather than call them disabled.
            if writer == nil { blocked = "the update log cannot be opened: \(error.description)" }
            throw ReloadError(key: "model.updates", message: error.description)
        }
        writer?.close()
        writer = opened.0
        blocked = nil
        if let torn = opened.1.torn {
            logger.warning("update log: dropped a torn last record (a crash while it was written); everything before it is kept",
                           metadata: ["path": "\(path)", "where": "\(torn)"])
        }
        nextSequence = max(nextSequence, opened.1.lastSequence + 1)
        return opened.1
    }

    private func replay(_ snap: ServingSnapshot, previous: ServingSnapshot?, records given: [UpdateLog.Record]?,
                        path: String) throws(ReloadError) -> ServingSnapshot {
        var records = given
        func log() throws(ReloadError) -> [UpdateLog.Record] {
            if let records { return records }
            // A log this server has been writing is re-read from disk: it holds everything applied.
            let read: [UpdateLog.Record]
            do { read = try UpdateLog.read(path: path).records } catch {
                throw ReloadError(key: "model.updates", message: error.description)
            }
            records = read
            return read
        }
        var next = nextSequence
        let started = Date()
        var replayed: [(String, Int)] = []
        let arms = snap.arms
        let groups = Self.groups(arms)
        var deltas: [ItemDelta] = []
        for group in groups {
            let bundle = group.bundle
            next = max(next, ServingBundle.baseSequence(bundle.index) + 1)
            if let before = previous?.arms.first(where: { $0.1.index === bundle.index && $0.1.model.fingerprint == bundle.model.fingerprint }) {
                deltas.append(before.1.delta)
                continue
            }
            let base = ServingBundle.baseSequence(bundle.index)
            let names = group.arms.map { arms[$0].0 }.joined(separator: "+")
            // Every record's rows go through the tower first, then into the delta at once (one
            // id table build for the whole log).
            var changes: [ItemDelta.Change] = []
            for record in try log() where record.sequence > base {
                let change: CatalogChange
                do { change = try ItemChangeCodec.decode(record.payload) } catch {
                    throw ReloadError(key: "model.updates", message: "\(path): record \(record.sequence) at byte \(record.offset) is not a change: \(error.message)")
                }
                changes.append(embed(change, sequence: record.sequence, bundle: bundle, arm: names))
            }
            replayed.append((names, changes.count))
            deltas.append(ItemDelta(sequence: base).applying(changes, base: bundle.index))
        }
        // What was read is released here (`records`, the caller's `Contents`): the deltas hold
        // the rows, the log on disk holds the changes.
        records = nil
        nextSequence = next
        if !replayed.isEmpty {
            logger.notice("update log replayed", metadata: [
                "path": "\(path)", "records": "\(replayed.map { "\($0.0)=\($0.1)" }.joined(separator: ","))",
                "seconds": "\(String(format: "%.3f", Date().timeIntervalSince(started)))",
                "delta_items": "\(deltas[0].upsertedCount)", "deleted": "\(deltas[0].deletedIDs.count)",
                "tower_rows": "\(towerRows)",
            ])
        }
        return Self.snapshot(snap, groups: groups, deltas: deltas)
    }

    /// A replayed change with its rows' vectors: rows that do not encode are skipped (see `attach`).
    private func embed(_ change: CatalogChange, sequence: UInt64, bundle: ServingBundle, arm: String) -> ItemDelta.Change {
        var upserts = change.upserts
        var vectors: [Float]
        towerRows += upserts.count
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

    private enum Follow {
        case followed
        case refused(String)
    }

    /// The file at `path` (the log's path, or a new one the config names) is not the one this
    /// server writes (`reason`): starts a fresh log there when that loses nothing (see the type's
    /// doc), else says why not.
    private func follow(reason: String, to path: String, serving bundles: [ServingBundle]) -> Follow {
        guard let w = writer else { return .refused(reason) }
        let atPath: UpdateLog.Contents
        do { atPath = try UpdateLog.read(path: path) } catch {
            return .refused("\(reason); the file now at the path is not a log this server can continue (\(error.message))")
        }
        guard atPath.records.isEmpty else {
            return .refused("\(reason); the file now at the path holds \(atPath.records.count) other records (a backup restored?)")
        }
        let minBase = bundles.map { ServingBundle.baseSequence($0.index) }.min() ?? 0
        let beyondBase = bundles.contains { $0.delta.sequence > ServingBundle.baseSequence($0.index) }
        var carry: [UpdateLog.Record] = []
        if w.openFileIsIntact, !w.isOpen(path) {
            do { carry = try w.readBack().records.filter { $0.sequence > minBase } } catch {
                if beyondBase { return .refused("\(reason); the old file cannot be read back (\(error.message))") }
            }
        } else if beyondBase {
            return .refused("\(reason); it held changes newer than the served base, which are gone with it")
        }
        w.close()
        writer = nil
        let opened: (UpdateLogWriter, UpdateLog.Contents)
        do {
            opened = try UpdateLogWriter.open(path: path)
            guard opened.1.records.isEmpty else { return .refused("\(reason); records appeared at the path while it was reopened") }
            try opened.0.append(records: carry)
        } catch {
            return .refused("\(reason); a fresh log cannot be started there: \(error.description)")
        }
        writer = opened.0
        logger.warning("update log: the file at the path changed; a fresh log continues there", metadata: [
            "path": "\(path)", "reason": "\(reason)", "carried_records": "\(carry.count)", "next_sequence": "\(nextSequence)",
        ])
        return .followed
    }

    /// Validates `change` against every arm of `snap` (nothing is applied when a row fails),
    /// appends it to the log and fsyncs, and returns the snapshot that serves it.
    ///
    /// - parameter body: the request body `change` was decoded from: logged as is (it is valid,
    ///   and the log's reader is the same decoder) unless deletes of unknown ids are dropped.
    /// - throws: `APIError` 400 naming `upsert[i].<field>` for a row a model cannot encode;
    ///   403 without `model.updates`; 503 `update_log_changed` while the log's file changed in a
    ///   way only a reload resolves; 500 when the log cannot be written (nothing applied).
    public func apply(_ change: CatalogChange, body: [UInt8]? = nil, to snap: ServingSnapshot) throws(APIError) -> (ServingSnapshot, Applied) {
        if let blocked {
            throw APIError(status: 503, code: "update_log_changed", message: "changes are refused until a reload: \(blocked)",
                           headers: [("Retry-After", "10")])
        }
        guard let writer else {
            throw APIError(status: 403, code: "updates_disabled", message: "no model.updates configured: the live catalog needs an update log")
        }
        let started = Date()
        let arms = snap.arms
        let groups = Self.groups(arms)
        var vectors: [[Float]] = []
        let rows = change.upserts.map(\.row)
        for group in groups {
            do {
                vectors.append(try ItemVectors.embed(rows, encoder: group.bundle.itemEncoder, tower: group.bundle.itemTower))
            } catch {
                throw APIError.badField(error.field, error.message)
            }
            towerRows += rows.count
        }
        // A delete of an id no arm holds changes nothing: not logged, not kept in `deleted_ids`.
        let deletes = change.deletes.filter { id in groups.contains { $0.bundle.delta.resolve(id, base: $0.bundle.index) != .unknown } }
        let notFound = change.deletes.count - deletes.count
        let ids = change.upserts.map(\.id)
        if ids.isEmpty && deletes.isEmpty {
            return (snap, Applied(upserted: 0, deleted: 0, notFound: notFound, items: arms[0].1.itemCount, sequence: nextSequence - 1,
                                  seconds: Date().timeIntervalSince(started)))
        }
        if let reason = writer.check(), case .refused(let why) = follow(reason: reason, to: writer.path, serving: arms.map(\.1)) {
            blocked = "\(writer.path): \(why)"
            logger.error("update log: the file at the path changed; changes are refused until a reload", metadata: [
                "path": "\(writer.path)", "reason": "\(why)"])
            throw APIError(status: 503, code: "update_log_changed", message: "changes are refused until a reload: \(blocked!)",
                           headers: [("Retry-After", "10")])
        }
        let sequence = nextSequence
        let payload: [UInt8]
        if let body, notFound == 0 {
            payload = body
        } else {
            payload = ItemChangeCodec.encode(CatalogChange(upserts: change.upserts, deletes: deletes))
        }
        do { try self.writer!.append(sequence: sequence, payload: payload) } catch {
            logger.error("update log: append failed; the change is not applied", metadata: ["reason": "\(error.description)"])
            throw APIError(status: 500, code: "update_log_failed", message: error.description)
        }
        nextSequence = sequence + 1
        lastAppend = Date()
        let deltas = zip(groups, vectors).map { g, v in
            g.bundle.delta.applying(ids: ids, vectors: v, deletes: deletes, sequence: sequence, base: g.bundle.index)
        }
        let next = Self.snapshot(snap, groups: groups, deltas: deltas)
        return (next, Applied(upserted: ids.count, deleted: deletes.count, notFound: notFound, items: next.primary.itemCount,
                              sequence: sequence, seconds: Date().timeIntervalSince(started)))
    }
}
