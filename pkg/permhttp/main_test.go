package permhttp_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

// TestMain runs the tests against a real PostgreSQL (see package pgtest)
// and then checks that no goroutine outlived them.
func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "permhttp: leaked goroutines: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
