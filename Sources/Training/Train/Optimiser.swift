import Foundation
import TwinTower

/// One training step over a mini-batch: forward both towers (`Tower.forward`), chain loss,
/// backward, Adam updates. Owns the optimiser state for every parameter.
struct Optimiser {
    var user: [[AdamState]]
    var item: [[(w: AdamState, b: AdamState)]]
    var userBias: [[AdamState]]
    var head: AdamState
    var embeddings: [String: AdamState]
    var t = 0

    init(model: Model) {
        user = model.userTower.layers.map { $0.map { AdamState(count: $0.weight.count) } }
        userBias = model.userTower.layers.map { $0.map { AdamState(count: $0.bias.count) } }
        item = model.itemTower.layers.map { $0.map { (AdamState(count: $0.weight.count), AdamState(count: $0.bias.count)) } }
        head = AdamState(count: model.headBias.count)
        embeddings = model.embeddings.mapValues { AdamState(count: $0.count) }
    }

    /// Returns the batch's summed loss.
    mutating func step(model: inout Model, batch rows: [TrainingRowReader.Row], posWeight: [Float], config: TrainingConfig) -> Float {
        t += 1
        let b = rows.count
        let tasks = model.spec.tasks.count, d = model.d
        let xu = rows.flatMap(\.user.x), xi = rows.flatMap(\.item.x)
        let ua = xu.withUnsafeBufferPointer { model.userTower.forward($0, batch: b, keepPreResidual: true) }
        let ia = xi.withUnsafeBufferPointer { model.itemTower.forward($0, batch: b, keepPreResidual: true) }
        let chain = model.chain
        var gu = [[Float]](repeating: [Float](repeating: 0, count: b * d), count: tasks)
        var gv = gu
        var gHead = [Float](repeating: 0, count: tasks)
        var loss: Float = 0
        var dots = [Float](repeating: 0, count: tasks)
        var g = [Float](repeating: 0, count: tasks)
        let scale = 1 / Float(b)
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
            }
            loss += ChainLoss.gradient(chain: chain, dots: dots, labels: rows[i].labels, posWeight: posWeight, grad: &g)
            for k in 0..<tasks { gr[i * tasks + k] = g[k] * scale }
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
        var userGrads = TowerGradients(zerosLike: model.userTower)
        var itemGrads = TowerGradients(zerosLike: model.itemTower)
        let gxu = TowerBackward.run(tower: model.userTower, x: xu, batch: b, acts: ua, gradFinal: gu, into: &userGrads)
        let gxi = TowerBackward.run(tower: model.itemTower, x: xi, batch: b, acts: ia, gradFinal: gv, into: &itemGrads)

        let lr = config.learningRate
        for k in 0..<tasks {
            for l in 0..<model.userTower.blockCount {
                user[k][l].step(&model.userTower.layers[k][l].weight, grad: userGrads.weight[k][l], lr: lr, t: t)
                userBias[k][l].step(&model.userTower.layers[k][l].bias, grad: userGrads.bias[k][l], lr: lr, t: t)
                item[k][l].w.step(&model.itemTower.layers[k][l].weight, grad: itemGrads.weight[k][l], lr: lr, t: t)
                item[k][l].b.step(&model.itemTower.layers[k][l].bias, grad: itemGrads.bias[k][l], lr: lr, t: t)
            }
        }
        head.step(&model.headBias, grad: gHead, lr: lr, t: t)
        updateEmbeddings(model: &model, side: .user, rows: rows.map(\.user), gx: gxu, config: config)
        updateEmbeddings(model: &model, side: .item, rows: rows.map(\.item), gx: gxi, config: config)
        return loss
    }

    private mutating func updateEmbeddings(model: inout Model, side: Side, rows: [EncodedSide], gx: [Float], config: TrainingConfig) {
        let encoder = model.encoder(side)
        let width = encoder.width
        var f = 0
        for field in encoder.fields where field.spec.kind != .dense {
            let dim = field.spec.dim ?? 0
            var grads: [Int32: [Float]] = [:]
            for (i, r) in rows.enumerated() {
                let ids = r.rows[f]
                guard !ids.isEmpty else { continue }
                let share = 1 / Float(ids.count)
                for id in ids {
                    var acc = grads[id] ?? [Float](repeating: 0, count: dim)
                    for j in 0..<dim { acc[j] += gx[i * width + field.offset + j] * share }
                    grads[id] = acc
                }
            }
            let name = field.spec.name
            if !grads.isEmpty, var table = model.embeddings[name], var state = embeddings[name] {
                model.embeddings[name] = []  // keep the table uniquely referenced while updating
                state.stepRows(&table, rows: grads, dim: dim, lr: config.embeddingLearningRate, l2: config.embeddingL2, t: t)
                model.embeddings[name] = table
                embeddings[name] = state
            }
            f += 1
        }
    }
}

/// Validation probabilities and labels, for AUC and log-loss per task.
struct Evaluation {
    var probabilities: [[Double]]
    var labels: [[Double]]

    init(tasks: Int) {
        probabilities = Array(repeating: [], count: tasks)
        labels = Array(repeating: [], count: tasks)
    }

    mutating func add(model: Model, rows: [TrainingRowReader.Row]) {
        guard !rows.isEmpty else { return }
        let b = rows.count, tasks = model.spec.tasks.count, d = model.d
        let xu = rows.flatMap(\.user.x), xi = rows.flatMap(\.item.x)
        let ua = xu.withUnsafeBufferPointer { model.userTower.forward($0, batch: b) }
        let ia = xi.withUnsafeBufferPointer { model.itemTower.forward($0, batch: b) }
        let u = (0..<tasks).map { ua.final(task: $0) }, v = (0..<tasks).map { ia.final(task: $0) }
        let chain = model.chain
        for i in 0..<b {
            let dots = (0..<tasks).map { k in (0..<d).reduce(Float(0)) { $0 + u[k][i * d + $1] * v[k][i * d + $1] } }
            let p = chain.probabilities(dots: dots)
            for k in 0..<tasks {
                probabilities[k].append(Double(p[k]))
                labels[k].append(Double(rows[i].labels[k]))
            }
        }
    }

    func aucs() -> [Double] {
        zip(probabilities, labels).map { Metrics.auc(scores: $0, labels: $1) ?? 0.5 }
    }

    func logLosses() -> [Double] {
        zip(probabilities, labels).map { Metrics.logLoss(probabilities: $0, labels: $1) ?? 0 }
    }
}
