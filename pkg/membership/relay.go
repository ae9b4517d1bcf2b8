package membership

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/orgperm/orgperm/pkg/relay"
)

// startRelay starts the queue relay when Config.Relay asks for one.
func (c *Client) startRelay(ctx context.Context) error {
	if !c.cfg.Relay {
		return nil
	}
	connect := c.cfg.RelayConnect
	if connect == nil {
		// Both hold session state (a LISTEN, a session-level lock): an app
		// that gave the listener a direct connection because its pool goes
		// through a transaction pooler needs the same for the relay.
		connect = c.cfg.ListenerConnect
	}
	if connect == nil {
		base := c.pool.Config().ConnConfig
		connect = func(ctx context.Context) (*pgx.Conn, error) {
			cc := base.Copy()
			if cc.RuntimeParams == nil {
				cc.RuntimeParams = map[string]string{}
			}
			cc.RuntimeParams["application_name"] = relay.ApplicationName
			return pgx.ConnectConfig(ctx, cc)
		}
	}
	r, err := relay.New(relay.Config{Connect: connect, Interval: c.cfg.RelayInterval, Logger: c.cfg.Logger})
	if err != nil {
		return fmt.Errorf("membership: %w", err)
	}
	if err := r.Start(ctx); err != nil {
		return fmt.Errorf("membership: start relay: %w", err)
	}
	c.relay = r
	return nil
}

// stopRelay stops the relay, if any.
func (c *Client) stopRelay(ctx context.Context) error {
	if c.relay == nil {
		return nil
	}
	return c.relay.Stop(ctx)
}
