/// Result of one non-blocking read or write.
enum IOResult {
    case bytes(Int)
    case wouldBlock
    case closed
    case failed(String)
}

/// Byte transport of one connection: a plain socket or TLS over it. Both are non-blocking and
/// used only from the connection's queue.
protocol SocketIO: AnyObject {
    func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult
    func write(_ bytes: UnsafeRawBufferPointer) -> IOResult
    /// Writes two buffers in one call where the transport can (`writev`), else the first.
    func write(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> IOResult
    /// TLS may need the socket writable to make progress on a read (renegotiation, handshake).
    var wantsWritable: Bool { get }
    func shutdown()
}
