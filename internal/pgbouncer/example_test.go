package pgbouncer_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/orgperm/orgperm/internal/pgbouncer"
)

// A throwaway PgBouncer in transaction mode in front of the server a
// connection string names, and a pgx connection through it.
func ExampleStart() {
	ctx := context.Background()
	direct, _ := pgx.ParseConfig("postgres://postgres@127.0.0.1:5432/app?sslmode=disable")
	b, err := pgbouncer.Start(ctx, pgbouncer.Config{ServerHost: direct.Host, ServerPort: int(direct.Port), Users: []string{direct.User}})
	if err != nil {
		fmt.Println(err) // pgbouncer: not installed (apt-get install pgbouncer), ...
		return
	}
	defer b.Close()
	conn, err := pgx.Connect(ctx, b.ConnString(direct.User, direct.Database)) // default_query_exec_mode=exec
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close(ctx)
}
