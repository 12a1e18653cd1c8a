import COpenSSL
import Foundation

/// A connection's bytes through OpenSSL over its socket, non-blocking: a read may need the
/// socket writable (`wantsWritable`) and a failed handshake is counted (`TLSContext`).
final class TLSSocketIO: SocketIO {
    let fd: Int32
    let ssl: OpaquePointer
    private(set) var wantsWritable = false

    init?(fd: Int32, context: TLSContext) {
        guard let ssl = context.newSSL() else { return nil }
        SSL_set_fd(ssl, fd)
        SSL_set_accept_state(ssl)
        self.fd = fd
        self.ssl = ssl
    }

    deinit { SSL_free(ssl) }

    private func classify(_ ret: Int32) -> IOResult {
        let err = SSL_get_error(ssl, ret)
        switch err {
        case SSL_ERROR_WANT_READ:
            wantsWritable = false
            return .wouldBlock
        case SSL_ERROR_WANT_WRITE:
            wantsWritable = true
            return .wouldBlock
        case SSL_ERROR_ZERO_RETURN:
            return .closed
        default:
            if SSL_is_init_finished(ssl) == 0 {
                let reason: String
                if err == SSL_ERROR_SSL { reason = TLSContext.lastError() }
                else if err == SSL_ERROR_SYSCALL { reason = errno == 0 ? "connection closed during the handshake" : String(cString: strerror(errno)) }
                else { reason = "SSL error \(err)" }
                TLSContext.recordHandshakeFailure(reason: reason)
            }
            ERR_clear_error()
            return .closed
        }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        ERR_clear_error()
        let n = SSL_read(ssl, buffer.baseAddress, Int32(min(buffer.count, Int(Int32.max))))
        if n > 0 { wantsWritable = false; return .bytes(Int(n)) }
        return classify(n)
    }

    func write(_ bytes: UnsafeRawBufferPointer) -> IOResult {
        ERR_clear_error()
        let n = SSL_write(ssl, bytes.baseAddress, Int32(min(bytes.count, 1 << 20)))
        if n > 0 { wantsWritable = false; return .bytes(Int(n)) }
        return classify(n)
    }

    func write(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> IOResult { write(first) }

    func shutdown() { _ = SSL_shutdown(ssl) }
}
