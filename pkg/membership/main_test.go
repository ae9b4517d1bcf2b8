package membership

import (
	"flag"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

// TestMain runs the tests against a real PostgreSQL (see package pgtest)
// and then checks that no goroutine outlived them. With -short the
// property tests check one random dataset instead of three.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		propDatasets = 1
	}
	os.Exit(pgtest.Run(m, pgtest.After(func() error { return goleak.Find() })))
}
