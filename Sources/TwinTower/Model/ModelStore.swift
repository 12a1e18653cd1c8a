import Foundation

/// Reads and writes a model directory: `model.json` + `weights.safetensors` (SPEC §1).
///
/// Every check names what is wrong (the JSON key, the tensor, the expected shape), so a model
/// written by another trainer that does not fit is refused with a reason, and a server that is
/// reloading keeps the model it had.
public enum ModelStore {
    public static let specFile = "model.json"
    public static let weightsFile = "weights.safetensors"

    public static func load(directory: String) throws(FormatError) -> Model {
        let specPath = (directory as NSString).appendingPathComponent(specFile)
        let weightsPath = (directory as NSString).appendingPathComponent(weightsFile)
        let spec = try loadSpec(path: specPath)
        let weights = try SafetensorsFile(path: weightsPath)
        var model = try assemble(spec: spec, weights: weights)
        model.fingerprint = try sha256Hex(ofFile: weightsPath)
        return model
    }

    /// Parses and validates `model.json`.
    public static func loadSpec(path: String) throws(FormatError) -> ModelSpec {
        guard let data = FileManager.default.contents(atPath: path) else { throw FormatError(path, "cannot read") }
        guard String(data: data, encoding: .utf8) != nil else { throw FormatError(path, "not valid UTF-8") }
        let spec: ModelSpec
        do {
            spec = try JSONDecoder().decode(ModelSpec.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw FormatError(path, "missing key \(jsonPath(context.codingPath + [key]))")
        } catch let DecodingError.typeMismatch(_, context) {
            throw FormatError(path, "wrong type at \(jsonPath(context.codingPath)): \(context.debugDescription)")
        } catch let DecodingError.valueNotFound(_, context) {
            throw FormatError(path, "null at \(jsonPath(context.codingPath))")
        } catch let DecodingError.dataCorrupted(context) {
            let at = context.codingPath.isEmpty ? "" : " at \(jsonPath(context.codingPath))"
            throw FormatError(path, "invalid JSON\(at): \(context.debugDescription)")
        } catch {
            throw FormatError(path, "invalid JSON: \(error)")
        }
        try validate(spec, path: path)
        return spec
    }

    static func jsonPath(_ keys: [CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: ["."])
    }

    /// Structural checks that the decoder cannot express.
    public static func validate(_ spec: ModelSpec, path: String) throws(FormatError) {
        guard spec.format == ModelSpec.formatTag else {
            throw FormatError(path, "format is \"\(spec.format)\", expected \"\(ModelSpec.formatTag)\"")
        }
        guard !spec.tasks.isEmpty else { throw FormatError(path, "tasks must list at least one task") }
        var names = Set<String>()
        for (i, t) in spec.tasks.enumerated() {
            guard !t.name.isEmpty else { throw FormatError(path, "tasks[\(i)].name is empty") }
            guard names.insert(t.name).inserted else { throw FormatError(path, "tasks[\(i)].name \"\(t.name)\" is repeated") }
        }
        let a = spec.architecture
        guard a.d >= 1 else { throw FormatError(path, "architecture.d must be at least 1") }
        for (i, h) in a.hidden.enumerated() where h < 1 {
            throw FormatError(path, "architecture.hidden[\(i)] must be at least 1")
        }
        var fieldNames = Set<String>()
        for (i, f) in spec.features.enumerated() {
            guard !f.name.isEmpty else { throw FormatError(path, "features[\(i)].name is empty") }
            guard fieldNames.insert(f.name).inserted else { throw FormatError(path, "features[\(i)].name \"\(f.name)\" is repeated") }
            if f.kind != .dense {
                guard let b = f.buckets, b >= 1 else { throw FormatError(path, "features[\(i)].buckets must be at least 1 for \(f.kind.rawValue) field \(f.name)") }
                guard let d = f.dim, d >= 1 else { throw FormatError(path, "features[\(i)].dim must be at least 1 for \(f.kind.rawValue) field \(f.name)") }
                _ = (b, d)
            }
        }
    }

    /// Builds a model from a spec and its weights, checking every tensor's dtype and shape.
    public static func assemble(spec: ModelSpec, weights: SafetensorsFile) throws(FormatError) -> Model {
        var embeddings: [String: [Float]] = [:]
        for f in spec.features where f.kind != .dense {
            let t = try weights.tensor("emb.\(f.name)", dtype: .f32, shape: [f.buckets ?? 0, f.dim ?? 0])
            embeddings[f.name] = t.floats()
        }
        var means: [Side: [Float]] = [:]
        var stds: [Side: [Float]] = [:]
        for side in Side.allCases {
            let n = spec.fields(of: side).filter { $0.kind == .dense }.count
            if n == 0 && weights.tensors["dense.\(side.rawValue).mean"] == nil {
                means[side] = []
                stds[side] = []
                continue
            }
            let mean = try weights.tensor("dense.\(side.rawValue).mean", dtype: .f32, shape: [n]).floats()
            let std = try weights.tensor("dense.\(side.rawValue).std", dtype: .f32, shape: [n]).floats()
            for (i, m) in mean.enumerated() where !m.isFinite {
                throw FormatError(weights.path, "tensor dense.\(side.rawValue).mean[\(i)] is not finite")
            }
            for (i, s) in std.enumerated() where !(s.isFinite && s > 0) {
                throw FormatError(weights.path, "tensor dense.\(side.rawValue).std[\(i)] must be a finite number > 0, is \(s)")
            }
            means[side] = mean
            stds[side] = std
        }
        func tower(_ side: Side) throws(FormatError) -> Tower {
            let inputWidth = spec.fields(of: side).reduce(0) { $0 + $1.inputWidth }
            var layers: [[DenseLayer]] = []
            for task in spec.tasks {
                var blocks: [DenseLayer] = []
                var width = inputWidth
                for (l, out) in (spec.architecture.hidden + [spec.architecture.d]).enumerated() {
                    let prefix = "\(side.rawValue).\(task.name).\(l)"
                    let w = try weights.tensor("\(prefix).weight", dtype: .f32, shape: [out, width]).floats()
                    let b = try weights.tensor("\(prefix).bias", dtype: .f32, shape: [out]).floats()
                    blocks.append(DenseLayer(inDim: width, outDim: out, weight: w, bias: b))
                    width = out
                }
                let extra = "\(side.rawValue).\(task.name).\(spec.architecture.hidden.count + 1).weight"
                if weights.tensors[extra] != nil {
                    throw FormatError(weights.path, "tensor \(extra) is one block more than architecture.hidden \(spec.architecture.hidden) allows")
                }
                layers.append(blocks)
            }
            return Tower(layers: layers, featureResidual: spec.architecture.fr)
        }
        var heads: [Float] = []
        for task in spec.tasks {
            heads.append(contentsOf: try weights.tensor("head.\(task.name).bias", dtype: .f32, shape: [1]).floats())
        }
        let model = Model(spec: spec, embeddings: embeddings, denseMean: means, denseStd: stds,
                          userTower: try tower(.user), itemTower: try tower(.item), headBias: heads)
        try checkFinite(model, path: weights.path)
        return model
    }

    /// NaN or infinite weights would answer NaN scores to every request: refuse them at load.
    static func checkFinite(_ model: Model, path: String) throws(FormatError) {
        for (name, table) in model.embeddings where !table.allSatisfy(\.isFinite) {
            throw FormatError(path, "tensor emb.\(name) holds NaN or infinite values")
        }
        for (side, tower) in [(Side.user, model.userTower), (.item, model.itemTower)] {
            for (k, blocks) in tower.layers.enumerated() {
                for (l, b) in blocks.enumerated() where !(b.weight.allSatisfy(\.isFinite) && b.bias.allSatisfy(\.isFinite)) {
                    throw FormatError(path, "tensor \(side.rawValue).\(model.spec.tasks[k].name).\(l) holds NaN or infinite values")
                }
            }
        }
        for (k, c) in model.headBias.enumerated() where !c.isFinite {
            throw FormatError(path, "tensor head.\(model.spec.tasks[k].name).bias is not finite")
        }
    }

    /// The tensors of a model under the SPEC's names.
    public static func tensors(of model: Model) -> [TensorEntry] {
        var out: [TensorEntry] = []
        for f in model.spec.features where f.kind != .dense {
            out.append(TensorEntry("emb.\(f.name)", shape: [f.buckets ?? 0, f.dim ?? 0], .f32(model.embeddings[f.name] ?? [])))
        }
        for side in Side.allCases {
            let mean = model.denseMean[side] ?? []
            if !mean.isEmpty {
                out.append(TensorEntry("dense.\(side.rawValue).mean", shape: [mean.count], .f32(mean)))
                out.append(TensorEntry("dense.\(side.rawValue).std", shape: [mean.count], .f32(model.denseStd[side] ?? [])))
            }
            for (k, task) in model.spec.tasks.enumerated() {
                for (l, b) in model.tower(side).layers[k].enumerated() {
                    out.append(TensorEntry("\(side.rawValue).\(task.name).\(l).weight", shape: [b.outDim, b.inDim], .f32(b.weight)))
                    out.append(TensorEntry("\(side.rawValue).\(task.name).\(l).bias", shape: [b.outDim], .f32(b.bias)))
                }
            }
        }
        for (k, task) in model.spec.tasks.enumerated() {
            out.append(TensorEntry("head.\(task.name).bias", shape: [1], .f32([model.headBias[k]])))
        }
        return out
    }

    /// Writes `model.json` and `weights.safetensors` into `directory` (created if needed) and
    /// returns the model with its new fingerprint.
    @discardableResult
    public static func save(_ model: Model, directory: String) throws(FormatError) -> Model {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw FormatError(directory, "cannot create directory: \(error.localizedDescription)")
        }
        let weightsPath = (directory as NSString).appendingPathComponent(weightsFile)
        try SafetensorsWriter.write(tensors(of: model), metadata: ["format": "pt"], to: weightsPath)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let specPath = (directory as NSString).appendingPathComponent(specFile)
        do {
            let data = try encoder.encode(model.spec)
            try data.write(to: URL(fileURLWithPath: specPath), options: .atomic)
        } catch {
            throw FormatError(specPath, "cannot write: \(error.localizedDescription)")
        }
        var saved = model
        saved.fingerprint = try sha256Hex(ofFile: weightsPath)
        return saved
    }

    /// A model with random weights, for demos and tests; dense statistics are mean 0, std 1.
    public static func random<G: RandomNumberGenerator>(spec: ModelSpec, using rng: inout G) -> Model {
        var embeddings: [String: [Float]] = [:]
        for f in spec.features where f.kind != .dense {
            let n = (f.buckets ?? 0) * (f.dim ?? 0)
            embeddings[f.name] = (0..<n).map { _ in Float.random(in: -0.5...0.5, using: &rng) }
        }
        var means: [Side: [Float]] = [:]
        var stds: [Side: [Float]] = [:]
        for side in Side.allCases {
            let n = spec.fields(of: side).filter { $0.kind == .dense }.count
            means[side] = (0..<n).map { _ in Float.random(in: -1...1, using: &rng) }
            stds[side] = (0..<n).map { _ in Float.random(in: 0.5...2, using: &rng) }
        }
        let a = spec.architecture
        let userWidth = spec.fields(of: .user).reduce(0) { $0 + $1.inputWidth }
        let itemWidth = spec.fields(of: .item).reduce(0) { $0 + $1.inputWidth }
        let user = Tower(inputWidth: userWidth, hidden: a.hidden, d: a.d, tasks: spec.tasks.count, featureResidual: a.fr, using: &rng)
        let item = Tower(inputWidth: itemWidth, hidden: a.hidden, d: a.d, tasks: spec.tasks.count, featureResidual: a.fr, using: &rng)
        let heads = spec.tasks.indices.map { k in Float(-2.5 - Double(k) * 1.5) }
        return Model(spec: spec, embeddings: embeddings, denseMean: means, denseStd: stds,
                     userTower: user, itemTower: item, headBias: heads)
    }
}
