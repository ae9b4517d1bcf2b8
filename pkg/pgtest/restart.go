package pgtest

import (
	"errors"
	"fmt"
)

// RestartServer is [Server.Restart] for programs that are not tests (a
// soak driver): it stops the server and starts it again on the same port
// and data directory, which drops every connection, and returns once it
// accepts connections again. It is only for a throwaway server from
// [Start] or [StartServer].
func (s *Server) RestartServer() error {
	if !s.owned {
		return errors.New("pgtest: RestartServer needs a throwaway server from Start or StartServer")
	}
	if err := s.stop(); err != nil {
		return fmt.Errorf("pgtest: restart: %w", err)
	}
	if err := s.start(); err != nil {
		return fmt.Errorf("pgtest: restart: %w", err)
	}
	return nil
}
