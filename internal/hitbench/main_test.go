package hitbench

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

// TestMain runs the benchmarks against a real PostgreSQL (see package
// pgtest) and then checks that no goroutine outlived them.
func TestMain(m *testing.M) {
	os.Exit(pgtest.Run(m, pgtest.After(func() error { return goleak.Find() })))
}
