package membership_test

import (
	"context"
	"fmt"

	"github.com/orgperm/orgperm/pkg/membership"
)

// Who changed alice's membership, and how: the library's writes under an
// actor, a raw SQL write with the same setting, and the history, newest
// first.
func ExampleStore_AuditHistory() {
	pool, cleanup := exampleDB()
	defer cleanup()
	ctx := context.Background()
	s := membership.NewStore(pool)

	admin := membership.WithActor(ctx, "admin:42")
	if err := s.AddMember(admin, "acme", "alice", membership.MemberOptions{}); err != nil {
		panic(err)
	}
	if err := s.SuspendMember(admin, "acme", "alice"); err != nil {
		panic(err)
	}
	if _, err := pool.Exec(ctx, `
		BEGIN;
		SELECT set_config('orgperm.actor', 'offboarding-job', true);
		UPDATE orgperm.memberships SET status = 'revoked' WHERE org_id = 'acme' AND user_id = 'alice';
		COMMIT`); err != nil {
		panic(err)
	}

	h, err := s.AuditHistory(ctx, membership.AuditQuery{Org: "acme", User: "alice"})
	if err != nil {
		panic(err)
	}
	for _, e := range h.Items {
		fmt.Println(e.Operation, e.Table, e.Actor, string(e.New))
	}
	// Output:
	// UPDATE memberships offboarding-job {"org_id": "acme", "status": "revoked", "user_id": "alice", "valid_from": null, "valid_until": null}
	// UPDATE memberships admin:42 {"org_id": "acme", "status": "suspended", "user_id": "alice", "valid_from": null, "valid_until": null}
	// INSERT memberships admin:42 {"org_id": "acme", "status": "active", "user_id": "alice", "valid_from": null, "valid_until": null}
}
