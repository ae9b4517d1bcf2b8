package main

import (
	"context"
	"errors"
	"flag"
)

func setupAudit(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error { return errors.New("audit: not yet") }
}
