package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/orgperm/orgperm/pkg/membership"
)

type auditJSON struct {
	ID        int64           `json:"id"`
	At        *string         `json:"at"`
	TxID      int64           `json:"txid"`
	Table     string          `json:"table"`
	Operation string          `json:"operation"`
	Org       string          `json:"org,omitempty"`
	User      string          `json:"user,omitempty"`
	Key       json.RawMessage `json:"key"`
	Old       json.RawMessage `json:"old"`
	New       json.RawMessage `json:"new"`
	DBUser    string          `json:"db_user"`
	Actor     string          `json:"actor,omitempty"`
}

func orNull(b json.RawMessage) json.RawMessage {
	if b == nil {
		return json.RawMessage("null")
	}
	return b
}

func orDash(b json.RawMessage) string {
	if b == nil {
		return "-"
	}
	return string(b)
}

// setupAudit: audit org ORG | member ORG USER | actor ACTOR.
func setupAudit(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	var (
		lf  listFlags
		org string
	)
	lf.declare(fs, false)
	fs.StringVar(&org, "org", "", "with actor: only this organization")
	return func(ctx context.Context, args []string) error {
		q := membership.AuditQuery{ListOptions: lf.options()}
		switch {
		case args[0] == "org" && len(args) == 2:
			q.Org = args[1]
		case args[0] == "member" && len(args) == 3:
			q.Org, q.User = args[1], args[2]
		case args[0] == "actor" && len(args) == 2:
			q.Actor, q.Org = args[1], org
		default:
			return usagef("audit: want org ORG, member ORG USER or actor ACTOR")
		}
		p, err := c.store().AuditHistory(ctx, q)
		if err != nil {
			return err
		}
		items := []auditJSON{}
		for _, e := range p.Items {
			items = append(items, auditJSON{e.ID, jtime(e.At), e.TxID, e.Table, e.Operation, e.Org, e.User,
				orNull(e.Key), orNull(e.Old), orNull(e.New), e.DBUser, e.Actor})
		}
		c.print(map[string]any{"entries": items, "next": p.Next}, func(w io.Writer) {
			fmt.Fprintln(w, "AT\tOP\tTABLE\tKEY\tACTOR\tDB USER\tCHANGE")
			for _, e := range p.Items {
				actor := e.Actor
				if actor == "" {
					actor = "-"
				}
				change := orDash(e.New)
				switch e.Operation {
				case "UPDATE":
					change = orDash(e.Old) + " -> " + orDash(e.New)
				case "DELETE":
					change = orDash(e.Old)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", htime(e.At), e.Operation, e.Table, orDash(e.Key), actor, e.DBUser, change)
			}
			printNext(w, p.Next)
		})
		return nil
	}
}
