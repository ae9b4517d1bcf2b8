package main

import (
	"context"
	"errors"
)

// serve runs the demo HTTP API.
func serve(ctx context.Context, url string) error {
	return errors.New("serve mode is not built yet")
}
