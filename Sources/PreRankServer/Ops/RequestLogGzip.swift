import CZlib
import Foundation
import Logging

/// gzip (RFC 1952) through zlib, for finished request-log files.
public enum RequestLogGzip {
    public struct Error: Swift.Error, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    /// Compresses `bytes` into one gzip member.
    public static func compress(_ bytes: [UInt8], level: Int32 = 6) throws(Error) -> [UInt8] {
        var out: [UInt8] = []
        var input = bytes
        let deflater = try Deflater(level: level)
        defer { deflater.end() }
        try deflater.feed(&input, finish: true) { out.append(contentsOf: $0) }
        return out
    }

    /// Decompresses gzip (one or more concatenated members) or zlib data.
    public static func decompress(_ bytes: [UInt8]) throws(Error) -> [UInt8] {
        var out: [UInt8] = []
        var input = bytes
        var consumed = 0
        while consumed < input.count {
            var strm = z_stream()
            guard czlib_inflate_init_gzip(&strm) == Z_OK else { throw Error("inflateInit failed") }
            defer { inflateEnd(&strm) }
            var chunk = [UInt8](repeating: 0, count: 64 * 1024)
            var status: Int32 = Z_OK
            let start = consumed
            input.withUnsafeMutableBufferPointer { inp in
                strm.next_in = inp.baseAddress! + start
                strm.avail_in = UInt32(inp.count - start)
                repeat {
                    chunk.withUnsafeMutableBufferPointer { c in
                        strm.next_out = c.baseAddress
                        strm.avail_out = UInt32(c.count)
                        status = inflate(&strm, Z_NO_FLUSH)
                        out.append(contentsOf: c[0..<(c.count - Int(strm.avail_out))])
                    }
                } while status == Z_OK
                consumed = inp.count - Int(strm.avail_in)
            }
            guard status == Z_STREAM_END else { throw Error("corrupt or truncated gzip data (zlib status \(status))") }
        }
        return out
    }

    /// Streams the file at `source` into a gzip file at `destination` (created, fsynced).
    public static func compressFile(from source: String, to destination: String, level: Int32 = 6) throws(Error) {
        let inFD = open(source, O_RDONLY | O_CLOEXEC)
        guard inFD >= 0 else { throw Error("open \(source): \(String(cString: strerror(errno)))") }
        defer { _ = Glibc.close(inFD) }
        let outFD = open(destination, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard outFD >= 0 else { throw Error("create \(destination): \(String(cString: strerror(errno)))") }
        defer { _ = Glibc.close(outFD) }
        let deflater = try Deflater(level: level)
        defer { deflater.end() }
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        var writeError: Error?
        let sink: ([UInt8]) -> Void = { chunk in
            guard writeError == nil else { return }
            if !writeAll(outFD, chunk) { writeError = Error("write \(destination): \(String(cString: strerror(errno)))") }
        }
        while true {
            let n = buffer.withUnsafeMutableBytes { read(inFD, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Error("read \(source): \(String(cString: strerror(errno)))")
            }
            var slice = Array(buffer[0..<n])
            try deflater.feed(&slice, finish: n == 0, sink: sink)
            if let writeError { throw writeError }
            if n == 0 { break }
        }
        guard fsync(outFD) == 0 else { throw Error("fsync \(destination): \(String(cString: strerror(errno)))") }
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                off += n
            }
            return true
        }
    }

    private struct Deflater {
        // z_stream holds pointers into itself (state->strm), so it lives on the heap.
        let strm: UnsafeMutablePointer<z_stream>

        init(level: Int32) throws(Error) {
            strm = .allocate(capacity: 1)
            strm.initialize(to: z_stream())
            guard czlib_deflate_init_gzip(strm, level) == Z_OK else {
                strm.deallocate()
                throw Error("deflateInit failed")
            }
        }

        func end() {
            deflateEnd(strm)
            strm.deallocate()
        }

        func feed(_ input: inout [UInt8], finish: Bool, sink: ([UInt8]) -> Void) throws(Error) {
            var chunk = [UInt8](repeating: 0, count: 64 * 1024)
            var status: Int32 = Z_OK
            input.withUnsafeMutableBufferPointer { inp in
                strm.pointee.next_in = inp.baseAddress
                strm.pointee.avail_in = UInt32(inp.count)
                repeat {
                    chunk.withUnsafeMutableBufferPointer { c in
                        strm.pointee.next_out = c.baseAddress
                        strm.pointee.avail_out = UInt32(c.count)
                        status = deflate(strm, finish ? Z_FINISH : Z_NO_FLUSH)
                        sink(Array(c[0..<(c.count - Int(strm.pointee.avail_out))]))
                    }
                } while strm.pointee.avail_out == 0 || (finish && status == Z_OK)
                strm.pointee.next_in = nil
            }
            if status == Z_STREAM_ERROR || (finish && status != Z_STREAM_END) {
                throw Error("deflate failed (zlib status \(status))")
            }
        }
    }
}
