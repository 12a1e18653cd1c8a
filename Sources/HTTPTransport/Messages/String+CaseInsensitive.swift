/// ASCII case-insensitive comparison for header names and tokens.
///
/// Why not `lowercased() ==`: it allocates two strings per comparison, on every header of every
/// request; field names are ASCII (RFC 9110 §5.1), so folding A-Z byte by byte is exact.
extension String {
    func caseInsensitiveEquals(_ other: String) -> Bool {
        let a = utf8, b = other.utf8
        guard a.count == b.count else { return false }
        for (x, y) in zip(a, b) where x != y {
            let lx = (x >= 65 && x <= 90) ? x + 32 : x
            let ly = (y >= 65 && y <= 90) ? y + 32 : y
            if lx != ly { return false }
        }
        return true
    }
}
