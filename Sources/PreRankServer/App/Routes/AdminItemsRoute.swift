import Catalog
import Foundation
import HTTPTransport
import StrictJSON
import TwinTower

/// `POST /admin/items`: upserts and deletes over the served indexes, durable in the update log
/// before the answer; every request that starts after the answer sees them.
struct AdminItemsRoute: RouteHandler {
    let context: AppContext
    let auth: AdminAuth
    let gauges: ServingGauges

    func handle(_ request: HTTPRequest, done: @escaping RouteDone) {
        let metrics = context.metrics
        if let error = auth.refusal(request, disabled: "updates_disabled") {
            metrics.recordItemUpdate(result: error.status == 401 ? "unauthorized" : "disabled")
            done(.error(error), nil)
            return
        }
        if let error = JSONMediaType.refusal(request) {
            metrics.recordItemUpdate(result: "invalid")
            done(.error(error), nil)
            return
        }
        let change: CatalogChange
        do { change = try ItemChangeCodec.decode(request.body) } catch {
            metrics.recordItemUpdate(result: "invalid")
            done(.error(error), nil)
            return
        }
        // On the reload queue: serialised with reloads and other changes (see `LiveCatalog`).
        let body = request.body
        context.reloadQueue.async { apply(change, body: body, done: done) }
    }

    /// Runs on the reload queue.
    private func apply(_ change: CatalogChange, body: [UInt8], done: @escaping RouteDone) {
        let metrics = context.metrics, catalog = context.catalog
        guard let snap = context.current else {
            done(.error(AppContext.notReady), nil)
            return
        }
        do throws(APIError) {
            let (next, applied) = try catalog.apply(change, body: body, to: snap)
            context.install(next)
            gauges.publishCatalog(next)
            metrics.recordItemUpdate(result: "ok")
            context.logger.info("items updated", metadata: [
                "upserted": "\(applied.upserted)", "deleted": "\(applied.deleted)", "not_found": "\(applied.notFound)",
                "items": "\(applied.items)", "tower_rows": "\(catalog.towerRows)",
                "sequence": "\(applied.sequence)", "seconds": "\(String(format: "%.4f", applied.seconds))",
            ])
            done(.json(200, Array("{\"upserted\":\(applied.upserted),\"deleted\":\(applied.deleted),\"not_found\":\(applied.notFound),\"items\":\(applied.items),\"sequence\":\(applied.sequence)}".utf8)), nil)
        } catch {
            metrics.recordItemUpdate(result: error.status == 400 ? "invalid" : error.status == 403 ? "disabled" : "failed")
            context.logger.info("admin/items", metadata: ["status": "\(error.status)", "code": "\(error.code)", "field": "\(error.field ?? "")"])
            done(.error(error), nil)
        }
    }
}
