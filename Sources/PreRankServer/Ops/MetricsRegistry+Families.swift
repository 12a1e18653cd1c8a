import HTTPTransport
/// The exposition's families, in the order scrapes have always seen them. Each row names a
/// metric, its type and help, and reads its samples from a scrape's state; `render` writes them.
/// docs/OPERATIONS.md and deploy/ dashboards and alerts use these names.
extension MetricsRegistry {
    /// Families before the gauges registered by name (`setGauge`).
    static let servingFamilies: [MetricFamily] = [
        MetricFamily("prerank_requests_total", .counter, "HTTP requests answered, by route, status code and serving arm.") { s in
            s.requests.sorted(by: { ($0.key.route, $0.key.code, $0.key.arm) < ($1.key.route, $1.key.code, $1.key.arm) }).map { key, v in
                .init("route=\"\(esc(key.route))\",code=\"\(key.code)\",arm=\"\(esc(key.arm))\"", v)
            }
        },
        MetricFamily(histogram: "prerank_request_duration_seconds", "Time from request received to response ready, by route.") { s in
            s.latency.sorted(by: { $0.key < $1.key }).map { ("route=\"\(esc($0.key))\"", $0.value) }
        },
        MetricFamily(histogram: "prerank_stage_duration_seconds", "Time per /prerank stage: parse, user_tower, resolve (ids to rows), score, rescore (F32 rescoring of a quantised scan), topk, encode.") { s in
            s.stages.sorted(by: { $0.key < $1.key }).map { ("stage=\"\(esc($0.key))\"", $0.value) }
        },
        MetricFamily(histogram: "prerank_candidates_per_request", "Candidates per /prerank request (index size when omitted).") { s in
            [("", s.candidates)]
        },
        MetricFamily("prerank_request_features_total", .counter, "User-side features of answered /prerank requests, by model feature and outcome (used, ignored, missing, coerced); request fields the model does not know count as feature=\"other\", outcome=\"ignored\".") { s in
            // The unknown-field line always, first: an alert on it needs a zero before the first one.
            let other = FeatureKey(feature: unknownFeatureLabel, outcome: .ignored)
            return [.init("feature=\"\(unknownFeatureLabel)\",outcome=\"ignored\"", s.features[other] ?? 0)]
                + s.features.sorted(by: { ($0.key.feature, $0.key.outcome.rawValue) < ($1.key.feature, $1.key.outcome.rawValue) })
                .filter { $0.key != other }
                .map { key, v in .init("feature=\"\(esc(key.feature))\",outcome=\"\(key.outcome.rawValue)\"", v) }
        },
        MetricFamily("prerank_partial_responses_total", .counter, "Responses cut short by the time budget (partial: true).") { s in [.init("", s.partial)] },
        MetricFamily("prerank_budget_expired_total", .counter, "Requests answered 504 because the budget expired before scoring.") { s in [.init("", s.budgetExpired)] },
        MetricFamily("prerank_shed_total", .counter, "Requests refused with 503 because the worker queue was full.") { s in [.init("", s.shed)] },
        MetricFamily("prerank_inflight_requests", .gauge, "Requests being scored or queued for a worker.") { s in [.init("", s.inflight)] },
        MetricFamily("prerank_reloads_total", .counter, "Reloads of config, model and index, by result (ok, rejected, unauthorized).") { s in
            resultCounts(s.reloads, zeros: ["ok", "rejected"]) { "result=\"\($0)\"" }
        },
        MetricFamily("prerank_item_updates_total", .counter, "POST /admin/items by result (ok, invalid, unauthorized, disabled, failed).") { s in
            resultCounts(s.itemUpdates, zeros: ["ok", "invalid"]) { "result=\"\($0)\"" }
        },
        MetricFamily("prerank_index_base_items", .gauge, "Items in the mapped base index, by arm.") { s in
            s.catalog.map { .init("arm=\"\($0.arm)\"", $0.baseItems) }
        },
        MetricFamily("prerank_index_delta_items", .gauge, "Items upserted over the base index (live catalog), by arm.") { s in
            s.catalog.map { .init("arm=\"\($0.arm)\"", $0.deltaItems) }
        },
        MetricFamily("prerank_index_deleted_items", .gauge, "Ids deleted from the live catalog and not upserted since, by arm.") { s in
            s.catalog.map { .init("arm=\"\($0.arm)\"", $0.deletedItems) }
        },
        MetricFamily("prerank_updates_sequence", .gauge, "Last update-log sequence applied to the served catalog, by arm.") { s in
            s.catalog.map { .init("arm=\"\($0.arm)\"", $0.sequence) }
        },
        MetricFamily("prerank_updates_log_bytes", .gauge, "Bytes of the update log (model.updates) this server writes.") { s in
            s.updateLog.map { [.init("", $0.bytes)] }
        },
        MetricFamily("prerank_updates_log_last_append_timestamp_seconds", .gauge, "Unix time of the last change appended to the update log (0: none since start).") { s in
            s.updateLog.map { [.init("", $0.lastAppend)] }
        },
        MetricFamily("prerank_item_tower_rows_total", .counter, "Item rows run through an item tower for the live catalog (changes and replays): one per row per distinct model and index.") { s in
            s.updateLog.map { [.init("", $0.towerRows)] }
        },
        // Every restart-only key, 0 or 1: a bounded set, and an alert can name the key.
        MetricFamily("prerank_config_restart_pending", .gauge, "1 for each restart-only config key whose reloaded value is not in force until the next restart.") { s in
            PreRankConfig.restartOnlyKeys.map { .init("key=\"\($0)\"", s.restartPending.contains($0) ? 1 : 0) }
        },
        MetricFamily("prerank_reloads_coalesced_total", .counter, "Reload triggers (SIGHUP, POST /admin/reload) answered by a reload already queued.") { s in
            [.init("", s.reloadsCoalesced)]
        },
        MetricFamily("prerank_model_loads_total", .counter, "Model directories read (start and reloads); an unchanged one is shared, not read.") { s in
            [.init("", s.loads.modelLoads)]
        },
        MetricFamily("prerank_index_loads_total", .counter, "Index files mapped and faulted in (start and reloads); an unchanged one is shared, not re-mapped.") { s in
            [.init("", s.loads.indexLoads)]
        },
        MetricFamily("prerank_reload_reused_total", .counter, "Models and indexes a reload shared with the snapshot in force because their files were unchanged.") { s in
            [.init("part=\"model\"", s.loads.modelsReused), .init("part=\"index\"", s.loads.indexesReused)]
        },
        MetricFamily("prerank_model_info", .gauge, "The model and index in force (value 1), by arm.") { s in
            s.modelInfo.map { m in
                .init("arm=\"\(esc(m.arm))\",version=\"\(esc(m.version))\",fingerprint=\"\(esc(m.fingerprint))\",dtype=\"\(m.dtype)\",tasks=\"\(esc(m.tasks.joined(separator: ",")))\"", 1)
            }
        },
        MetricFamily("prerank_fusion_weight", .gauge, "Fusion weights in force, by arm and term (alpha: CTR, beta: CTCVR, gamma: relevance).") { s in
            s.modelInfo.flatMap { m -> [MetricFamily.Sample] in
                guard let f = m.fusion else { return [] }
                return [("alpha", f.alpha), ("beta", f.beta), ("gamma", f.gamma)].map { term, v in
                    .init("arm=\"\(esc(m.arm))\",formula=\"\(f.formula.rawValue)\",term=\"\(term)\"", v)
                }
            }
        },
        // Beside prerank_requests_total{arm}: the alert PrerankCanaryShareOff compares the two.
        MetricFamily("prerank_canary_share", .gauge, "Configured share of /prerank requests routed to the canary (canary.share; 0 without a canary).") { s in
            [.init("", MetricFamily.format(s.canaryShare))]
        },
        MetricFamily("prerank_index_items", .gauge, "Items in the index in force, by arm.") { s in
            s.modelInfo.map { .init("arm=\"\(esc($0.arm))\"", $0.items) }
        },
        MetricFamily("prerank_request_log_lines_total", .counter, "Request-log lines written.") { s in [.init("", s.requestLogWritten)] },
        MetricFamily("prerank_request_log_dropped_total", .counter, "Request-log lines dropped because the log queue was full.") { s in
            [.init("", s.requestLogDropped)]
        },
        MetricFamily("prerank_log_lines_dropped_total", .counter, "stderr log lines (access lines) dropped because the asynchronous log writer was full.") { _ in
            [.init("", AsyncLogWriter.dropped)]
        },
    ] + transportFamilies

    /// The HTTP layer's counters, present once the transport has reported (`setTransport`).
    static let transportFamilies: [MetricFamily] = [
        MetricFamily("prerank_http_connections_open", .gauge, "Open HTTP connections.") { s in s.transport.map { [.init("", $0.open)] } },
        MetricFamily("prerank_http_connections_accepted_total", .counter, "HTTP connections accepted.") { s in
            s.transport.map { [.init("", $0.accepted)] }
        },
        MetricFamily("prerank_http_connections_rejected_total", .counter, "HTTP connections refused at the connection limit.") { s in
            s.transport.map { [.init("", $0.rejected)] }
        },
        MetricFamily("prerank_http_protocol_errors_total", .counter, "Requests refused by the HTTP parser.") { s in
            s.transport.map { [.init("", $0.protocolErrors)] }
        },
        MetricFamily("prerank_http_timeouts_total", .counter, "Connections cut by a deadline, by kind: head (incl. silent), body, idle (keep-alive), write (answer not taken).") { s in
            s.transport.map { t in
                [("body", t.bodyTimeouts), ("head", t.headTimeouts), ("idle", t.idleTimeouts), ("write", t.writeTimeouts)].map {
                    .init("kind=\"\($0.0)\"", $0.1)
                }
            }
        },
        MetricFamily("prerank_http_connections_evicted_total", .counter, "Idle connections closed to admit a new one at max_connections.") { s in
            s.transport.map { [.init("", $0.evicted)] }
        },
        MetricFamily("prerank_http_budget_refusals_total", .counter, "Requests answered 503 because the buffered-bytes budget was spent.") { s in
            s.transport.map { [.init("", $0.budgetRefusals)] }
        },
        MetricFamily("prerank_http_buffered_bytes", .gauge, "Request bytes reserved in the buffered-bytes budget (bodies, inflated gzip).") { s in
            s.transport.map { [.init("", $0.bufferedBytes)] }
        },
        MetricFamily("prerank_http_buffered_bytes_limit", .gauge, "The buffered-bytes budget (server.max_buffered_bytes).") { s in
            s.transport.map { [.init("", $0.bufferedBytesLimit)] }
        },
    ]

    /// Families after the gauges registered by name.
    static let buildFamilies: [MetricFamily] = [
        MetricFamily("prerank_tls_handshake_failures_total", .counter, "TLS handshakes that failed (protocol, cipher or group refused, bad client); reasons are logged at debug.") { _ in
            [.init("", TLSContext.handshakeFailures)]
        },
        MetricFamily("prerank_build_info", .gauge, "The build serving (value 1): version, git commit, Swift compiler, scoring kernel in use.") { _ in
            [.init("version=\"\(esc(BuildInfo.version))\",commit=\"\(esc(BuildInfo.commit))\",swift=\"\(esc(BuildInfo.swift))\",kernel=\"\(esc(BuildInfo.kernel))\"", 1)]
        },
    ]

    /// A by-result counter: `zeros` first when they have no count yet (so `rate()` sees them
    /// from the first scrape), then every result in name order. `labels` writes a result's label
    /// text (in the row, so the table shows every label it exports).
    private static func resultCounts(_ counts: [String: UInt64], zeros: [String],
                                     labels: (String) -> String) -> [MetricFamily.Sample] {
        zeros.filter { counts[$0] == nil }.map { .init(labels($0), 0) }
            + counts.sorted(by: { $0.key < $1.key }).map { .init(labels(esc($0.key)), $0.value) }
    }

    private static func esc(_ s: String) -> String { MetricFamily.escape(s) }
}
