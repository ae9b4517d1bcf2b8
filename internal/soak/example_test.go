package soak_test

import (
	"fmt"

	"github.com/orgperm/orgperm/internal/soak"
)

// The fault list of cmd/soak's -inject flag: named faults and the groups
// default, silent and all.
func ExampleParseFaults() {
	faults, err := soak.ParseFaults("default,blackhole-listener", false)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(faults)
	_, err = soak.ParseFaults("unplug", false)
	fmt.Println(err)
	// Output:
	// [terminate-one terminate-all storm blackhole-listener]
	// soak: invalid config: unknown fault "unplug" (want default, silent, all, or of terminate-one, restart, terminate-all, storm, blackhole-listener, blackhole-all, terminate-relay)
}
