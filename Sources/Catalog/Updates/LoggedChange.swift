import StrictJSON

/// The changes an update log holds, decoded, for the offline tools (`build-index --updates`
/// folds them into a new base index, `inspect --updates` counts what they change over one).
///
/// Why here and not in the CLI: which records count (those after the base's
/// `updates_sequence`), how they are decoded, and how upserts and deletes of one id cancel are
/// the catalog's rules, the same the server's replay follows; the commands only word the output.
public enum LoggedChange {
    /// A record whose payload is not a change: the log was written by something else, or by a
    /// codec that accepted what this one refuses. The tools stop on it (skipping it would serve
    /// a catalog the server would not).
    public struct Undecodable: Error, Sendable {
        public var record: UpdateLog.Record
        public var error: APIError
    }

    /// Every record's change, in log order, each carrying its record's sequence.
    public static func changes(of records: [UpdateLog.Record]) throws(Undecodable) -> [CatalogChange] {
        var changes: [CatalogChange] = []
        changes.reserveCapacity(records.count)
        for record in records {
            do throws(APIError) {
                var change = try ItemChangeCodec.decode(record.payload)
                change.sequence = record.sequence
                changes.append(change)
            } catch {
                throw Undecodable(record: record, error: error)
            }
        }
        return changes
    }

    /// What the records after `base` change, folded by id: the last change of an id wins
    /// (an upsert after a delete brings it back, a delete after an upsert removes it).
    public struct Fold: Sendable, Equatable {
        /// Ids whose last change is an upsert (served from the delta).
        public var upserted: Set<Int64> = []
        /// Ids whose last change is a delete.
        public var deleted: Set<Int64> = []
        /// Records newer than the base.
        public var applied = 0
    }

    /// Folds the records newer than `base` (the index's `updates_sequence`).
    public static func fold(_ records: [UpdateLog.Record], after base: UInt64) throws(Undecodable) -> Fold {
        var fold = Fold()
        for record in records where record.sequence > base {
            let change: CatalogChange
            do throws(APIError) { change = try ItemChangeCodec.decode(record.payload) } catch {
                throw Undecodable(record: record, error: error)
            }
            for u in change.upserts { fold.upserted.insert(u.id); fold.deleted.remove(u.id) }
            for id in change.deletes { fold.upserted.remove(id); fold.deleted.insert(id) }
            fold.applied += 1
        }
        return fold
    }
}
