"""raftcheck for pytest: fault tests of a Raft register cluster written as pytest tests.

Installing raftcheck registers the plugin (`pytest11` entry point
`pytest_raftcheck.plugin`). A test composes fixtures: `raftcheck_cluster` (started,
torn down after the test; the `raftcheck` marker sets its size, planted bug, node
options and crash file system), `raftcheck_nemesis` (partitions by shape, kills,
pauses, latency and heals, each recorded in the history as docs/spec.md section 7
says), `raftcheck_client` (a recording client: read, write and cas that write their
invoke and completion ops), and `assert_linearizable` (checks the recorded history;
its failure message is the checker's explanation and the path of the run folder,
which holds the history, results.json, report.html and the nodes' logs).
`--raftcheck-backend local|docker` picks the backend, `--raftcheck-store DIR` the
store (docs/usage.md, "Writing your own fault tests").
"""
