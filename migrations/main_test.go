package migrations_test

import (
	"os"
	"testing"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
