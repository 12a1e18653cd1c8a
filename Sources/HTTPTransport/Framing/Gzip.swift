import CZlib

/// gzip for request and response bodies (zlib).
enum Gzip {
    enum Failure: Error, Equatable {
        case corrupt
        /// Inflating would exceed the limit: answer 413 (a "zip bomb" stops here).
        case tooLarge
        /// `reserve` refused more bytes (the server's buffered-bytes budget is spent): answer 503.
        case overBudget
    }

    /// Decompresses a gzip (or zlib) stream, refusing to produce more than `limit` bytes.
    ///
    /// - parameters:
    ///   - reserve: asked for every block of output before it is kept (the memory budget);
    ///     answering false stops with `.overBudget`. The caller releases what it granted.
    static func inflate(_ input: [UInt8], limit: Int, reserve: (Int) -> Bool = { _ in true }) throws(Failure) -> [UInt8] {
        var stream = z_stream()
        guard czlib_inflate_init_gzip(&stream) == Z_OK else { throw .corrupt }
        defer { inflateEnd(&stream) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var status: Int32 = Z_OK
        var failure: Failure?
        input.withUnsafeBufferPointer { inBuf in
            stream.next_in = UnsafeMutablePointer(mutating: inBuf.baseAddress)
            stream.avail_in = UInt32(inBuf.count)
            repeat {
                chunk.withUnsafeMutableBufferPointer { c in
                    stream.next_out = c.baseAddress
                    stream.avail_out = UInt32(c.count)
                    status = CZlib.inflate(&stream, Z_NO_FLUSH)
                    let produced = c.count - Int(stream.avail_out)
                    if out.count + produced > limit { failure = .tooLarge; return }
                    if produced > 0 && !reserve(produced) { failure = .overBudget; return }
                    out.append(contentsOf: c[0..<produced])
                }
                if failure != nil { return }
                if status == Z_BUF_ERROR && stream.avail_in == 0 { failure = .corrupt; return }
            } while status == Z_OK
            if status != Z_STREAM_END { failure = failure ?? .corrupt }
        }
        if let failure { throw failure }
        return out
    }

    /// Compresses to a gzip stream; nil if zlib fails (the caller then sends the body as is,
    /// without `Content-Encoding: gzip`: returning the input would label plain bytes as gzip).
    /// The response gzip-encoded when the client accepts gzip and the body is at least
    /// `threshold` bytes; unchanged (identity) when zlib fails, so the label is always true.
    static func encode(_ response: HTTPResponse, acceptsGzip: Bool, threshold: Int, level: Int32 = 6) -> HTTPResponse {
        guard acceptsGzip, response.body.count >= threshold,
              !response.headers.contains(where: { $0.name.caseInsensitiveEquals("content-encoding") }),
              let compressed = deflate(response.body, level: level) else { return response }
        var r = response
        r.body = compressed
        r.headers.append(("Content-Encoding", "gzip"))
        r.headers.append(("Vary", "Accept-Encoding"))
        return r
    }

    static func deflate(_ input: [UInt8], level: Int32 = 6) -> [UInt8]? {
        var stream = z_stream()
        guard czlib_deflate_init_gzip(&stream, level) == Z_OK else { return nil }
        defer { deflateEnd(&stream) }
        let bound = Int(deflateBound(&stream, UInt(input.count)))
        var out = [UInt8](repeating: 0, count: bound + 32)
        var written = 0
        var status = Z_STREAM_ERROR
        input.withUnsafeBufferPointer { inBuf in
            out.withUnsafeMutableBufferPointer { o in
                stream.next_in = UnsafeMutablePointer(mutating: inBuf.baseAddress)
                stream.avail_in = UInt32(inBuf.count)
                stream.next_out = o.baseAddress
                stream.avail_out = UInt32(o.count)
                status = CZlib.deflate(&stream, Z_FINISH)
                written = o.count - Int(stream.avail_out)
            }
        }
        // One Z_FINISH call into a deflateBound-sized buffer ends the stream; anything else failed.
        guard status == Z_STREAM_END else { return nil }
        out.removeSubrange(written...)
        return out
    }
}
