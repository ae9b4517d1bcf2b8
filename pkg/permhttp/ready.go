package permhttp

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
)

// ReadinessChecker says whether a component can serve: Check returns nil
// when it can, and an error saying why not. (*membership.Client).Check is
// one: nil when the cache is synced and proven, a typed error saying why it
// is bypassed otherwise.
type ReadinessChecker interface {
	Check(ctx context.Context) error
}

// ReadinessFunc adapts a function to a [ReadinessChecker], to add checks
// of the app's own or to combine several.
type ReadinessFunc func(ctx context.Context) error

// Check calls f(ctx).
func (f ReadinessFunc) Check(ctx context.Context) error { return f(ctx) }

// ReadyConfig configures the handler that [Ready] builds. Only Checker is
// required; the zero value of every other field means its default.
type ReadyConfig struct {
	// Checker is asked on every request, with the request's context. It
	// is required.
	Checker ReadinessChecker

	// Detail puts the checker's error text in the body of a 503 ("not
	// ready: " and the text). Such text can name database hosts and
	// users: turn it on only where the probe endpoint is not public.
	// Defaults to false: the body is "not ready".
	Detail bool

	// Logger receives a line when readiness changes: at Warn level with
	// the error when it is lost (and on the first failed probe), at Info
	// level when it comes back. Defaults to a logger that discards
	// everything.
	Logger *slog.Logger
}

// Ready returns a handler for a readiness probe (a Kubernetes
// readinessProbe, a load balancer's health check): 200 "ready" when
// cfg.Checker.Check returns nil, 503 "not ready" otherwise, as text/plain
// with Cache-Control: no-store. It answers every method; route it with a
// pattern such as "GET /readyz" (which takes HEAD too).
//
// It returns a *ConfigError when cfg.Checker is nil.
func Ready(cfg ReadyConfig) (http.Handler, error) {
	if cfg.Checker == nil {
		return nil, &ConfigError{Field: "ReadyConfig.Checker", Reason: "must not be nil"}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &readyHandler{cfg: cfg}, nil
}

// readyHandler is the handler Ready returns.
type readyHandler struct {
	cfg ReadyConfig

	mu    sync.Mutex
	state int // 0 before the first probe, then readyYes or readyNo
}

const (
	readyYes = 1
	readyNo  = 2
)

// ServeHTTP implements http.Handler.
func (h *readyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	err := h.cfg.Checker.Check(ctx)
	h.transition(ctx, err)
	hd := w.Header()
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "no-store")
	if err == nil {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ready\n"))
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	body := "not ready\n"
	if h.cfg.Detail {
		body = "not ready: " + err.Error() + "\n"
	}
	_, _ = w.Write([]byte(body))
}

// transition logs a change of readiness.
func (h *readyHandler) transition(ctx context.Context, err error) {
	state := readyYes
	if err != nil {
		state = readyNo
	}
	h.mu.Lock()
	prev := h.state
	h.state = state
	h.mu.Unlock()
	switch {
	case state == prev:
	case state == readyNo:
		h.cfg.Logger.WarnContext(ctx, "permhttp: not ready", "err", err)
	case prev == readyNo:
		h.cfg.Logger.InfoContext(ctx, "permhttp: ready again")
	}
}
