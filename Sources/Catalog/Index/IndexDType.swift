import TwinTower

/// Storage type of the item index's `vectors` tensor.
public enum IndexDType: String, Sendable, Equatable, CaseIterable, Codable {
    /// 4 bytes per value, exact.
    case f32
    /// 2 bytes per value (IEEE half), relative error ~5e-4.
    case f16
    /// 1 byte per value with one F32 scale per (item, task): value = int8 · scale.
    case i8

    /// Bytes of one stored value (the I8 scales are extra).
    public var bytesPerValue: Int {
        switch self {
        case .f32: return 4
        case .f16: return 2
        case .i8: return 1
        }
    }

    public var tensorDType: DType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .i8: return .i8
        }
    }
}
