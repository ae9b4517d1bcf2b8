// Package hitbench holds the benchmarks of issue #12's hit path and memory
// figures, next to their yardstick in the same run: the cached
// membership.Client.HasPermission hit against otter v2's Get with a TTL on
// the same keys, and the heap an entry costs in the client's cache against
// otter's own per-entry overhead. It has no code of its own, only tests.
//
// Every figure is a ratio to a yardstick measured in the same process,
// interleaved: BenchmarkHit runs -hitbench.rounds rounds (default 6), each
// running every implementation once, since go test's -count would repeat a
// sub-benchmark back to back:
//
//	go test -run '^$' -bench . -benchmem -cpu 1,2 ./internal/hitbench/ | tee hit.txt
//	benchstat -col /impl -ignore round hit.txt
//
// The population is the "typical set" of issue #12, in one organization
// with 1,000 members: 3 roles each (one from each of three pools of 4, 3 and
// 2 roles, 9 in all, each granting its own codenames: 50 per member, 151 in
// the catalog), and 20 record grants over 5 resource types, 10 through the
// member's roles and 10 to the member alone (records of their own).
package hitbench
