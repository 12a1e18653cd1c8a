import Dispatch
import Foundation
import TwinTower

/// One side (user-query or item) of a training step: Adam for its tower's weights and biases,
/// lazy Adam for its embedding tables, the scratch for the batch's sparse table gradients, and,
/// during a step, the tower and tables themselves.
///
/// The two sides share nothing but the loss, so a step runs them on two threads. A class, and
/// `@unchecked Sendable`, because during a step each instance is touched by its own thread only
/// (and between steps by the caller only), which the compiler cannot see.
final class SideTrainer: @unchecked Sendable {
    let layout: SideLayout
    private var weights: [[AdamState]]
    private var biases: [[AdamState]]
    /// Per categorical/multi field, `layout.embeddings` order.
    private var tableStates: [AdamState]
    private var tableGradients: [SparseTableGradient]
    /// Per table: multiplies the embedding learning rate (`--id-lr-scale` on id fields).
    private let lrScale: [Float]
    /// Moved in from the model for a step (so this thread holds the only reference) and out after.
    var tower = Tower(layers: [], featureResidual: false)
    var tables: [[Float]] = []
    private(set) var activations: Tower.Activations?

    /// Tables have `buckets + 1` rows while training: the last is the OOV row (Admission.swift).
    init(tower: Tower, layout: SideLayout, lrScale: [Float]? = nil) {
        self.layout = layout
        weights = tower.layers.map { $0.map { AdamState(count: $0.weight.count) } }
        biases = tower.layers.map { $0.map { AdamState(count: $0.bias.count) } }
        tableStates = layout.embeddings.map { AdamState(count: ($0.buckets + 1) * $0.dim) }
        tableGradients = layout.embeddings.map { SparseTableGradient(buckets: $0.buckets + 1, dim: $0.dim) }
        self.lrScale = lrScale ?? layout.embeddings.map { _ in 1 }
    }

    /// `x` `[B × width]` → activations (kept for the backward pass).
    func forward(_ x: [Float], batch: Int) {
        activations = x.withUnsafeBufferPointer { tower.forward($0, batch: batch, keepPreResidual: true) }
    }

    /// Backward through the tower from dL/du (`gradFinal[k]` `[B × d]`), then every update of
    /// this side: Adam on the tower, lazy Adam (with L2) on the embedding rows the batch touched.
    func backwardAndUpdate(x: [Float], gradFinal: [[Float]], batch: Batch, data: EncodedRows, assembler: BatchAssembler,
                           t: Int, config: TrainingConfig) {
        guard let acts = activations else { preconditionFailure("backward before forward") }
        activations = nil
        var grads = TowerGradients(zerosLike: tower)
        let gx = TowerBackward.run(tower: tower, x: x, batch: batch.count, acts: acts, gradFinal: gradFinal, into: &grads)
        for k in 0..<tower.taskCount {
            for l in 0..<tower.blockCount {
                weights[k][l].step(&tower.layers[k][l].weight, grad: grads.weight[k][l], lr: config.learningRate, t: t)
                biases[k][l].step(&tower.layers[k][l].bias, grad: grads.bias[k][l], lr: config.learningRate, t: t)
            }
        }
        assembler.scatter(batch, side: layout.side, from: data, gx: gx, into: &tableGradients)
        for f in tableGradients.indices where !tableGradients[f].touched.isEmpty {
            tableStates[f].stepRows(&tables[f], rows: tableGradients[f].touched, grads: tableGradients[f].grads,
                                    dim: layout.embeddings[f].dim, lr: config.embeddingLearningRate * lrScale[f], l2: config.embeddingL2, t: t)
            tableGradients[f].reset()
        }
    }

    /// Moves this side's tower and embedding tables out of `model` (which is left without them).
    func take(from model: inout Model) {
        if layout.side == .user {
            tower = model.userTower
            model.userTower = Tower(layers: [], featureResidual: false)
        } else {
            tower = model.itemTower
            model.itemTower = Tower(layers: [], featureResidual: false)
        }
        tables = layout.embeddings.map { model.embeddings.removeValue(forKey: $0.name) ?? [] }
    }

    /// Moves them back.
    func put(into model: inout Model) {
        if layout.side == .user { model.userTower = tower } else { model.itemTower = tower }
        for (field, table) in zip(layout.embeddings, tables) { model.embeddings[field.name] = table }
        tower = Tower(layers: [], featureResidual: false)
        tables = []
    }
}

/// One training step over a mini-batch: forward both towers (`Tower.forward`, the same code as
/// serving), chain loss, backward, Adam updates. Owns the optimiser state for every parameter.
struct Optimiser {
    let user: SideTrainer
    let item: SideTrainer
    var head: AdamState
    var t = 0
    /// 2: sides on two threads; 1: one after the other.
    let threads: Int

    init(model: Model, assembler: BatchAssembler, threads: Int = 2, lrScale: [String: Float] = [:]) {
        self.threads = threads
        user = SideTrainer(tower: model.userTower, layout: assembler.user, lrScale: assembler.user.embeddings.map { lrScale[$0.name] ?? 1 })
        item = SideTrainer(tower: model.itemTower, layout: assembler.item, lrScale: assembler.item.embeddings.map { lrScale[$0.name] ?? 1 })
        head = AdamState(count: model.headBias.count)
    }

    /// Returns the batch's loss summed over rows, each row's times its weight, and the sum of the
    /// weights (`batch.count` without weights). The two sides run on two threads: forward, then
    /// backward and updates.
    ///
    /// The loss minimised is `Σ_i w_i ℓ_i / Σ_i w_i` over the batch (ℓ_i: the row's weighted-BCE
    /// summed over tasks, `--pos-weight` included; w_i = 1 without `--weight-column`, which makes
    /// it the plain batch mean): a row of weight k steps exactly as k copies of it, a row of weight 0
    /// as its absence, and scaling every weight by c changes nothing. A batch whose weights sum to
    /// 0 takes no step at all (Adam's momentum would still move the parameters).
    mutating func step(model: inout Model, batch: Batch, data: EncodedRows, assembler: BatchAssembler,
                       posWeight: [Float], config: TrainingConfig) -> (loss: Float, weight: Float) {
        let b = batch.count
        let weights = batch.weights
        precondition(weights.isEmpty || weights.count == b)
        let weightSum = weights.isEmpty ? Float(b) : weights.reduce(0, +)
        guard weightSum > 0 else { return (0, 0) }
        t += 1
        let tasks = model.spec.tasks.count, d = model.d
        let sides = [user, item], inputs = [batch.xu, batch.xi]
        for side in sides { side.take(from: &model) }
        defer { for side in sides { side.put(into: &model) } }
        runSides { s in sides[s].forward(inputs[s], batch: b) }
        guard let ua = user.activations, let ia = item.activations else { preconditionFailure("both towers ran") }

        // Chain loss; dL/du_k = g_k · v_k and dL/dv_k = g_k · u_k with g_k = dL/dr_k.
        let chain = model.chain
        var gu = [[Float]](repeating: [Float](repeating: 0, count: b * d), count: tasks)
        var gv = gu
        var gHead = [Float](repeating: 0, count: tasks)
        var loss: Float = 0
        var dots = [Float](repeating: 0, count: tasks)
        var g = [Float](repeating: 0, count: tasks)
        var labels = [Float](repeating: 0, count: tasks)
        let scale = 1 / weightSum
        let u = (0..<tasks).map { ua.final(task: $0) }, v = (0..<tasks).map { ia.final(task: $0) }
        var gr = [Float](repeating: 0, count: b * tasks)  // dL/dr_k per example
        for i in 0..<b {
            for k in 0..<tasks {
                dots[k] = u[k].withUnsafeBufferPointer { uk in
                    v[k].withUnsafeBufferPointer { vk in
                        var s: Float = 0
                        for j in 0..<d { s += uk[i * d + j] * vk[i * d + j] }
                        return s
                    }
                }
                labels[k] = batch.labels[i * tasks + k]
            }
            let rowLoss = ChainLoss.gradient(chain: chain, dots: dots, labels: labels, posWeight: posWeight, grad: &g)
            if weights.isEmpty {
                loss += rowLoss
                for k in 0..<tasks { gr[i * tasks + k] = g[k] * scale }
            } else {
                let w = weights[i]
                loss += w * rowLoss
                for k in 0..<tasks { gr[i * tasks + k] = g[k] * (w * scale) }
            }
        }
        for k in 0..<tasks {
            gu[k].withUnsafeMutableBufferPointer { guk in
                gv[k].withUnsafeMutableBufferPointer { gvk in
                    u[k].withUnsafeBufferPointer { uk in
                        v[k].withUnsafeBufferPointer { vk in
                            for i in 0..<b {
                                let gk = gr[i * tasks + k]
                                gHead[k] += gk
                                for j in 0..<d {
                                    guk[i * d + j] = gk * vk[i * d + j]
                                    gvk[i * d + j] = gk * uk[i * d + j]
                                }
                            }
                        }
                    }
                }
            }
        }

        let gradFinal = [gu, gv], step = t
        runSides { s in
            sides[s].backwardAndUpdate(x: inputs[s], gradFinal: gradFinal[s], batch: batch, data: data, assembler: assembler,
                                       t: step, config: config)
        }
        head.step(&model.headBias, grad: gHead, lr: config.learningRate, t: t)
        return (loss, weightSum)
    }

    /// `body(0)` (user side) and `body(1)` (item side), on two threads or one after the other.
    private func runSides(_ body: @Sendable (Int) -> Void) {
        if threads >= 2 {
            DispatchQueue.concurrentPerform(iterations: 2, execute: body)
        } else {
            body(0)
            body(1)
        }
    }
}

/// Validation probabilities and labels, for AUC and log-loss per task.
///
/// With `weights` (`--weighted-validation`), AUC and log-loss weigh each row by its
/// `--weight-column` value; otherwise every row counts once.
struct Evaluation {
    var probabilities: [[Double]]
    var labels: [[Double]]
    /// Per validation row (shared by every task); nil: unweighted.
    var weights: [Double]?

    init(tasks: Int, weighted: Bool = false) {
        probabilities = Array(repeating: [], count: tasks)
        labels = Array(repeating: [], count: tasks)
        weights = weighted ? [] : nil
    }

    mutating func add(model: Model, batch: Batch) {
        guard batch.count > 0 else { return }
        let b = batch.count, tasks = model.spec.tasks.count, d = model.d
        let xu = batch.xu, xi = batch.xi
        let ua = xu.withUnsafeBufferPointer { model.userTower.forward($0, batch: b) }
        let ia = xi.withUnsafeBufferPointer { model.itemTower.forward($0, batch: b) }
        let u = (0..<tasks).map { ua.final(task: $0) }, v = (0..<tasks).map { ia.final(task: $0) }
        let chain = model.chain
        if weights != nil { weights!.append(contentsOf: batch.weights.isEmpty ? Array(repeating: 1, count: b) : batch.weights.map(Double.init)) }
        for i in 0..<b {
            let dots = (0..<tasks).map { k in (0..<d).reduce(Float(0)) { $0 + u[k][i * d + $1] * v[k][i * d + $1] } }
            let p = chain.probabilities(dots: dots)
            for k in 0..<tasks {
                probabilities[k].append(Double(p[k]))
                labels[k].append(Double(batch.labels[i * tasks + k]))
            }
        }
    }

    /// Per task; nil where AUC is undefined (a split with no positive or no negative for it):
    /// a placeholder 0.5 would read as a measured "no better than chance".
    func aucs() -> [Double?] {
        zip(probabilities, labels).map { p, l in
            weights.map { Metrics.auc(scores: p, labels: l, weights: $0) } ?? Metrics.auc(scores: p, labels: l)
        }
    }

    /// Per task; nil without validation rows.
    func logLosses() -> [Double?] {
        zip(probabilities, labels).map { p, l in
            weights.map { Metrics.logLoss(probabilities: p, labels: l, weights: $0) } ?? Metrics.logLoss(probabilities: p, labels: l)
        }
    }
}
