import Foundation
import TwinTower

/// Numbered streams of `SplitMix64(seed:stream:index:)`; the raw values are part of the
/// determinism contract (changing one changes every file of that seed).
public enum RandomStream: UInt64, Sendable {
    case categories = 1
    case brands = 2
    case users = 3
    case items = 4
    case queries = 5
    case names = 6
    case calibration = 7
    case requests = 8
    case split = 9
    case attributes = 10
}
