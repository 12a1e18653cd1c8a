import HTTPTransport

extension TransportLimits {
    /// The transport's limits from the config's `server` section: the one place where config
    /// keys (milliseconds, bytes) become transport limits (nanoseconds, bytes). The limits the
    /// config does not set are derived or fixed in `TransportLimits`, where they are explained.
    public init(server: PreRankConfig.Server) {
        self.init(maxConnections: server.maxConnections, maxHeaderBytes: server.maxHeaderBytes, maxBodyBytes: server.maxBodyBytes,
                  maxBufferedBytes: server.maxBufferedBytes, headerTimeoutMs: server.headerTimeoutMs,
                  bodyTimeoutMs: server.bodyTimeoutMs, idleTimeoutMs: server.idleTimeoutMs)
    }
}
