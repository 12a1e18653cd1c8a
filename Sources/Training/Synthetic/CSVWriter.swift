import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A streaming, buffered CSV writer (RFC 4180: comma separated, `\n` row ends, a field that
/// holds `,` `"` `\r` or `\n` is quoted with inner quotes doubled). Values of a multi-valued
/// cell are joined with `|` (`joinMulti`).
///
/// Fast path: callers append pre-escaped bytes, integers and fixed-point numbers straight into
/// a 1 MiB buffer that is written with `write(2)` when full. Write errors are remembered and
/// thrown by `close()`, so the hot appends do not throw.
public final class CSVWriter {
    public let path: String
    private var fd: Int32
    private let buffer: UnsafeMutablePointer<UInt8>
    private let capacity: Int
    private var count = 0
    private var failure: SyntheticError?
    /// Bytes handed to the OS so far (excluding what is still buffered).
    public private(set) var bytesWritten = 0

    /// Creates or truncates `path`.
    public init(path: String, bufferCapacity: Int = 1 << 20) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd < 0 { throw SyntheticError("cannot create \(path): \(String(cString: strerror(errno)))") }
        capacity = max(4096, bufferCapacity)
        buffer = .allocate(capacity: capacity)
    }

    deinit {
        if fd >= 0 {
            flush()
            _ = Glibc_close(fd)
        }
        buffer.deallocate()
    }

    // MARK: Escaping

    /// `field` as an RFC 4180 cell: quoted (inner `"` doubled) only when it holds `,` `"` CR or LF.
    public static func escape(_ field: String) -> String {
        let needs = field.utf8.contains { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\"") || $0 == 10 || $0 == 13 }
        guard needs else { return field }
        return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// The cell of a multi-valued field: values joined with `|`, then escaped.
    public static func joinMulti(_ values: [String]) -> String { escape(values.joined(separator: "|")) }

    // MARK: Rows

    /// Writes one row of plain values, escaping each.
    public func writeRow(_ fields: [String]) {
        for (j, f) in fields.enumerated() {
            if j > 0 { appendByte(UInt8(ascii: ",")) }
            appendRaw(CSVWriter.escape(f))
        }
        endRow()
    }

    /// Appends `text` as is (already escaped).
    public func appendRaw(_ text: String) {
        var text = text
        text.withUTF8 { appendRaw(UnsafeRawBufferPointer($0)) }
    }

    /// Appends bytes as is (already escaped).
    @inline(__always)
    public func appendRaw(_ bytes: UnsafeRawBufferPointer) {
        if bytes.count > capacity - count {
            flush()
            if bytes.count > capacity {
                writeAll(bytes.baseAddress!, bytes.count)
                return
            }
        }
        if bytes.count > 0 {
            (buffer + count).update(from: bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), count: bytes.count)
            count += bytes.count
        }
    }

    @inline(__always)
    public func appendByte(_ byte: UInt8) {
        if count == capacity { flush() }
        buffer[count] = byte
        count += 1
    }

    @inline(__always)
    public func comma() { appendByte(UInt8(ascii: ",")) }

    @inline(__always)
    public func endRow() { appendByte(10) }

    /// Appends a decimal integer.
    public func appendInt(_ value: Int) {
        if count + 24 > capacity { flush() }
        var v = value.magnitude
        if value < 0 { buffer[count] = UInt8(ascii: "-"); count += 1 }
        var digits = 0
        var tmp = v
        repeat { digits += 1; tmp /= 10 } while tmp > 0
        var pos = count + digits - 1
        repeat {
            buffer[pos] = UInt8(ascii: "0") &+ UInt8(v % 10)
            v /= 10
            pos -= 1
        } while v > 0
        count += digits
    }

    /// Appends a non-negative `value` with exactly `decimals` fraction digits (round half away
    /// from zero), e.g. `0.00123457` for decimals 8. Rounding is monotone, so `a ≤ b` still holds
    /// for the written values.
    public func appendFixed(_ value: Double, decimals: Int) {
        precondition(value >= 0 && value.isFinite && decimals >= 0 && decimals <= 15)
        var scale: UInt64 = 1
        for _ in 0..<decimals { scale *= 10 }
        let scaled = UInt64((value * Double(scale)).rounded())
        appendInt(Int(scaled / scale))
        guard decimals > 0 else { return }
        if count + decimals + 1 > capacity { flush() }
        buffer[count] = UInt8(ascii: ".")
        var frac = scaled % scale
        var pos = count + decimals
        for _ in 0..<decimals {
            buffer[pos] = UInt8(ascii: "0") &+ UInt8(frac % 10)
            frac /= 10
            pos -= 1
        }
        count += decimals + 1
    }

    /// Appends a non-negative `value` rounded to `digits` significant digits, trailing zeros
    /// dropped: plain decimals down to 1e-5 (`0.0812345`, `0.00012`), scientific below
    /// (`3.25e-07`), `0` for zero. Rounding to significant digits is monotone, so `a ≤ b` still
    /// holds for the written values.
    public func appendSignificant(_ value: Double, digits: Int = 7) {
        precondition(value >= 0 && value.isFinite && digits >= 1 && digits <= 15)
        if count + 32 > capacity { flush() }
        if value == 0 {
            buffer[count] = UInt8(ascii: "0")
            count += 1
            return
        }
        var top: UInt64 = 1                       // 10^(digits-1)
        for _ in 1..<digits { top *= 10 }
        var e = Int(Foundation.floor(Foundation.log10(value)))
        var m = UInt64(CSVWriter.scale(value, byPowerOfTen: digits - 1 - e).rounded())
        if m < top {                              // log10 rounded up across a power of ten
            e -= 1
            m = UInt64(CSVWriter.scale(value, byPowerOfTen: digits - 1 - e).rounded())
        }
        if m >= top * 10 {                        // rounding carried into a new digit
            e += 1
            m = UInt64(CSVWriter.scale(value, byPowerOfTen: digits - 1 - e).rounded())
        }
        // Drop trailing zeros of the mantissa: `m` keeps `used` digits.
        var used = digits
        while used > 1 && m % 10 == 0 { m /= 10; used -= 1 }
        let zero = UInt8(ascii: "0")
        if e < 0 && e >= -5 {
            buffer[count] = zero; buffer[count + 1] = UInt8(ascii: "."); count += 2
            for _ in 0..<(-e - 1) { buffer[count] = zero; count += 1 }
            writeDigits(m, used)
        } else if e >= 0 && e < digits {
            // value ≥ 1: integer part is the first e+1 digits (padded with zeros).
            var pow: UInt64 = 1
            if used > e + 1 { for _ in 0..<(used - e - 1) { pow *= 10 } }
            let whole = used > e + 1 ? m / pow : m * CSVWriter.tenPower(e + 1 - used)
            appendInt(Int(whole))
            if used > e + 1 {
                buffer[count] = UInt8(ascii: "."); count += 1
                writeDigits(m % pow, used - e - 1)
            }
        } else {
            var pow: UInt64 = 1
            for _ in 1..<used { pow *= 10 }
            buffer[count] = zero &+ UInt8(m / pow); count += 1
            if used > 1 {
                buffer[count] = UInt8(ascii: "."); count += 1
                writeDigits(m % pow, used - 1)
            }
            buffer[count] = UInt8(ascii: "e"); count += 1
            buffer[count] = e < 0 ? UInt8(ascii: "-") : UInt8(ascii: "+"); count += 1
            let a = abs(e)
            if a < 10 { buffer[count] = zero; count += 1 }
            appendInt(a)
        }
    }

    /// Writes `value` as exactly `width` digits (leading zeros kept).
    @inline(__always)
    private func writeDigits(_ value: UInt64, _ width: Int) {
        var v = value
        var pos = count + width - 1
        for _ in 0..<width {
            buffer[pos] = UInt8(ascii: "0") &+ UInt8(v % 10)
            v /= 10
            pos -= 1
        }
        count += width
    }

    private static func tenPower(_ k: Int) -> UInt64 {
        var p: UInt64 = 1
        for _ in 0..<max(0, k) { p *= 10 }
        return p
    }

    /// `value · 10^k`, with exact powers of ten (≤ 10^22) per step.
    private static func scale(_ value: Double, byPowerOfTen k: Int) -> Double {
        var v = value
        var k = k
        while k > 22 { v *= 1e22; k -= 22 }
        while k < -22 { v /= 1e22; k += 22 }
        var p = 1.0
        for _ in 0..<abs(k) { p *= 10 }
        return k >= 0 ? v * p : v / p
    }

    // MARK: Output

    /// Hands the buffered bytes to the OS.
    public func flush() {
        guard count > 0 else { return }
        writeAll(buffer, count)
        count = 0
    }

    /// Flushes and closes the file; throws the first write error met.
    public func close() throws {
        guard fd >= 0 else { return }
        flush()
        if Glibc_close(fd) != 0, failure == nil {
            failure = SyntheticError("cannot close \(path): \(String(cString: strerror(errno)))")
        }
        fd = -1
        if let failure { throw failure }
    }

    private func writeAll(_ base: UnsafeRawPointer, _ n: Int) {
        guard failure == nil, fd >= 0 else { return }
        var done = 0
        while done < n {
            let w = write(fd, base + done, n - done)
            if w < 0 {
                if errno == EINTR { continue }
                failure = SyntheticError("cannot write \(path): \(String(cString: strerror(errno)))")
                return
            }
            done += w
        }
        bytesWritten += n
    }
}

@inline(__always)
private func Glibc_close(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
    return Glibc.close(fd)
    #else
    return Darwin.close(fd)
    #endif
}
