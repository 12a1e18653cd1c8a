import Testing
import TwinTower
@testable import Training

/// `features.yaml` goes through the node tree (`Yams.compose`) like the server config: a
/// non-scalar or repeated key is an error naming where, never a trap.
@Suite struct FeaturesFileTests {
    static let good = """
        tasks: [{name: ctr, label: click}, {name: ctcvr, label: order}]
        features:
          - {name: user_id, side: user, kind: categorical, buckets: 101, dim: 4}
          - {name: age, side: user, kind: dense}
          - {name: item_id, side: item, kind: categorical, buckets: 101, dim: 4}
        """

    @Test func parsesAGoodFile() throws {
        let f = try FeaturesFile.parse(yaml: Self.good)
        #expect(f.tasks.map(\.name) == ["ctr", "ctcvr"])
        #expect(f.features.count == 3 && f.features[0].buckets == 101 && f.features[1].dim == nil)
    }

    @Test(arguments: [
        ("? {a: 1}\n: x\ntasks: []\n", "not a scalar"),                                  // a mapping as a top-level key
        ("tasks: [{name: ctr, label: click, [x]: 1}]\nfeatures: []\n", "not a scalar"),    // a list as a key in a task
        ("tasks: [{name: ctr, label: click}]\ntasks: [{name: b, label: c}]\nfeatures: []\n", "tasks is given twice"),
        ("tasks: [{name: 5, label: click}]\nfeatures: []\n", "tasks[0] needs string name and label"),
        ("tasks: [{name: ctr, label: click}]\nfeatures: [{name: a, side: user, kind: categorical, buckets: \"9\", dim: 2}]\n",
         "features[0].buckets must be an integer"),
        ("- 1\n- 2\n", "must be a mapping"),
    ])
    func refusesWithAReason(yaml: String, reason: String) {
        do {
            _ = try FeaturesFile.parse(yaml: yaml, path: "f.yaml")
            Issue.record("accepted: \(yaml)")
        } catch {
            #expect(error.file == "f.yaml")
            #expect(error.message.contains(reason), "\(error.message)")
        }
    }
}
