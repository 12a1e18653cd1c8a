import Foundation
import Fusion

/// Hand-written SVG heat maps of WR@K over the α × β grid, one panel per formula (additive at its
/// best γ), each on its own colour scale (10th percentile to maximum): α down, β across, the value in every cell, the best cell
/// outlined, a colour legend per panel. Plain SVG 1.1 text, no dependencies; opens in a browser.
public enum FusionHeatMap {
    static let cellW = 74.0, cellH = 30.0
    static let left = 96.0, top = 96.0, legendW = 18.0, legendGap = 34.0, right = 110.0, bottom = 64.0

    /// Viridis, sampled at 9 stops (matplotlib's table), interpolated linearly.
    static let viridis: [(Double, Double, Double)] = [
        (0.267, 0.005, 0.329), (0.279, 0.175, 0.483), (0.230, 0.322, 0.546), (0.173, 0.449, 0.558),
        (0.128, 0.567, 0.551), (0.153, 0.683, 0.502), (0.369, 0.789, 0.383), (0.678, 0.864, 0.190),
        (0.993, 0.906, 0.144),
    ]

    static func colour(_ t: Double) -> (hex: String, light: Bool) {
        let x = min(max(t.isFinite ? t : 0, 0), 1) * Double(viridis.count - 1)
        let i = min(Int(x), viridis.count - 2)
        let f = x - Double(i)
        let a = viridis[i], b = viridis[i + 1]
        let r = a.0 + (b.0 - a.0) * f, g = a.1 + (b.1 - a.1) * f, bl = a.2 + (b.2 - a.2) * f
        let hex = String(format: "#%02x%02x%02x", Int((r * 255).rounded()), Int((g * 255).rounded()), Int((bl * 255).rounded()))
        let luminance = 0.2126 * r + 0.7152 * g + 0.0722 * bl
        return (hex, luminance > 0.5)
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func n(_ v: Double) -> String { String(format: "%.1f", v) }

    /// The SVG document.
    public static func svg(_ results: [FusionGridResult], subtitle: String = "") -> String {
        guard let k = results.first?.k else { return "<svg xmlns=\"http://www.w3.org/2000/svg\"/>" }
        let panelW = results.map { left + Double($0.grid.betas.count) * cellW + legendGap + legendW + right }.max() ?? 400
        let width = max(panelW, 560)
        var y = 64.0
        var body: [String] = []
        body.append("<text x=\"\(n(width / 2))\" y=\"28\" text-anchor=\"middle\" font-size=\"18\" font-weight=\"bold\">\(escape("WR@\(k) of the fused score over the fusion grid"))</text>")
        if !subtitle.isEmpty {
            body.append("<text x=\"\(n(width / 2))\" y=\"48\" text-anchor=\"middle\" font-size=\"12\" fill=\"#444\">\(escape(subtitle))</text>")
        }
        for res in results {
            let grid = res.grid
            let na = grid.alphas.count, nb = grid.betas.count
            let g = res.bestIndex.gamma
            let x0 = left, y0 = y + top - 16
            // Per-panel colour scale from the 10th percentile to the maximum: one poor corner
            // (α = β = 0 ranks by id) would otherwise flatten everything else into one colour.
            // Cells below the low end take the darkest colour; the legend marks it "≤".
            let values = (0..<na).flatMap { a in (0..<nb).compactMap { res.wr(alpha: a, beta: $0, gamma: g) } }.sorted()
            let hi = values.last ?? 1
            var lo = values.isEmpty ? 0 : values[values.count / 10]
            if lo >= hi { lo = values.first ?? 0 }
            let clipped = (values.first ?? lo) < lo
            let span = hi > lo ? hi - lo : 1
            var title: String
            switch grid.formula {
            case .additive:
                title = "additive: score = α·CTR + β·CTCVR" + (grid.gammas.count > 1 || grid.gammas[g] != 0 ? " + γ·relevance, γ = \(JSONText.plain(grid.gammas[g]))" : "")
                if grid.gammas.count > 1 { title += " (best γ)" }
            case .multiplicative:
                title = "multiplicative: score = CTR^α · CTCVR^β"
            }
            let bestText = "best α = \(JSONText.plain(res.best.alpha)), β = \(JSONText.plain(res.best.beta))"
                + (grid.formula == .additive ? ", γ = \(JSONText.plain(res.best.gamma))" : "")
                + ": WR@\(k) = " + (res.bestWR.map { String(format: "%.4f", $0) } ?? "n/a")
            body.append("<g class=\"panel\" id=\"\(grid.formula.rawValue)\">")
            body.append("<text x=\"\(n(x0))\" y=\"\(n(y + 10))\" font-size=\"14\" font-weight=\"bold\">\(escape(title))</text>")
            body.append("<text x=\"\(n(x0))\" y=\"\(n(y + 28))\" font-size=\"12\" fill=\"#444\">\(escape(bestText)) (outlined)</text>")
            // β axis (columns), on top of the grid
            body.append("<text x=\"\(n(x0 + Double(nb) * cellW / 2))\" y=\"\(n(y0 - 24))\" text-anchor=\"middle\" font-size=\"12\" font-style=\"italic\">\(escape("β (CTCVR weight)"))</text>")
            for b in 0..<nb {
                body.append("<text x=\"\(n(x0 + (Double(b) + 0.5) * cellW))\" y=\"\(n(y0 - 6))\" text-anchor=\"middle\" font-size=\"11\">\(escape(JSONText.plain(grid.betas[b])))</text>")
            }
            // α axis (rows)
            let midY = y0 + Double(na) * cellH / 2
            body.append("<text x=\"\(n(x0 - 56))\" y=\"\(n(midY))\" text-anchor=\"middle\" font-size=\"12\" font-style=\"italic\" transform=\"rotate(-90 \(n(x0 - 56)) \(n(midY)))\">\(escape("α (CTR weight)"))</text>")
            for a in 0..<na {
                body.append("<text x=\"\(n(x0 - 8))\" y=\"\(n(y0 + (Double(a) + 0.5) * cellH + 4))\" text-anchor=\"end\" font-size=\"11\">\(escape(JSONText.plain(grid.alphas[a])))</text>")
            }
            // cells
            for a in 0..<na {
                for b in 0..<nb {
                    let cx = x0 + Double(b) * cellW, cy = y0 + Double(a) * cellH
                    let v = res.wr(alpha: a, beta: b, gamma: g)
                    let (fill, light) = v.map { colour(($0 - lo) / span) } ?? ("#dddddd", true)
                    let label = v.map { String(format: "%.4f", $0) } ?? "n/a"
                    body.append("<rect x=\"\(n(cx))\" y=\"\(n(cy))\" width=\"\(n(cellW))\" height=\"\(n(cellH))\" fill=\"\(fill)\" stroke=\"#ffffff\" stroke-width=\"1\"><title>\(escape("α = \(JSONText.plain(grid.alphas[a])), β = \(JSONText.plain(grid.betas[b])): WR@\(k) = \(label)"))</title></rect>")
                    body.append("<text x=\"\(n(cx + cellW / 2))\" y=\"\(n(cy + cellH / 2 + 4))\" text-anchor=\"middle\" font-size=\"11\" fill=\"\(light ? "#000000" : "#ffffff")\">\(label)</text>")
                }
            }
            let bx = x0 + Double(res.bestIndex.beta) * cellW, by = y0 + Double(res.bestIndex.alpha) * cellH
            body.append("<rect class=\"best\" x=\"\(n(bx + 1.5))\" y=\"\(n(by + 1.5))\" width=\"\(n(cellW - 3))\" height=\"\(n(cellH - 3))\" fill=\"none\" stroke=\"#e4002b\" stroke-width=\"3\"/>")
            // legend: a vertical gradient, high at the top
            let lx = x0 + Double(nb) * cellW + legendGap, lh = max(Double(na) * cellH, 90)
            let gradID = "scale-\(grid.formula.rawValue)"
            body.append("<defs><linearGradient id=\"\(gradID)\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">")
            for (i, _) in viridis.enumerated() {
                let t = Double(i) / Double(viridis.count - 1)
                body.append("<stop offset=\"\(String(format: "%.3f", t))\" stop-color=\"\(colour(t).hex)\"/>")
            }
            body.append("</linearGradient></defs>")
            body.append("<rect x=\"\(n(lx))\" y=\"\(n(y0))\" width=\"\(n(legendW))\" height=\"\(n(lh))\" fill=\"url(#\(gradID))\" stroke=\"#888\" stroke-width=\"0.5\"/>")
            for i in 0...4 {
                let t = Double(i) / 4
                let ty = y0 + lh * (1 - t)
                body.append("<line x1=\"\(n(lx + legendW))\" y1=\"\(n(ty))\" x2=\"\(n(lx + legendW + 4))\" y2=\"\(n(ty))\" stroke=\"#000\" stroke-width=\"1\"/>")
                let prefix = i == 0 && clipped ? "≤ " : ""
                body.append("<text x=\"\(n(lx + legendW + 7))\" y=\"\(n(ty + 4))\" font-size=\"10\">\(prefix)\(String(format: "%.4f", lo + t * (hi - lo)))</text>")
            }
            body.append("<text x=\"\(n(lx))\" y=\"\(n(y0 - 14))\" font-size=\"11\">WR@\(k)</text>")
            body.append("</g>")
            y = y0 + max(Double(na) * cellH, lh) + bottom
        }
        let height = y
        return """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="\(n(width))" height="\(n(height))" viewBox="0 0 \(n(width)) \(n(height))" font-family="Helvetica, Arial, sans-serif">
            <title>\(escape("WR@\(k) over the fusion grid (prerank tune-fusion)"))</title>
            <rect x="0" y="0" width="\(n(width))" height="\(n(height))" fill="#ffffff"/>
            \(body.joined(separator: "\n"))
            </svg>

            """
    }
}
