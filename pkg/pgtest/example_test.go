package pgtest_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// A fresh database with orgperm's schema, from code that has no
// testing.TB; a test calls pgtest.NewPool(t) or pgtest.NewDatabase(t)
// instead, and the database is dropped when the test ends.
func ExampleCreateDatabase() {
	ctx := context.Background()
	url, drop, err := pgtest.CreateDatabase(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer drop()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close(ctx)
	var version int64
	err = conn.QueryRow(ctx, "SELECT max(version_id) FROM orgperm_goose_db_version").Scan(&version)
	fmt.Println(err == nil && version > 0)
	// Output: true
}
