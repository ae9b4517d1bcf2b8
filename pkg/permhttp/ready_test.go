package permhttp_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/permhttp"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// switchable is a ReadinessChecker whose answer the test sets.
type switchable struct {
	mu  sync.Mutex
	err error
	ctx context.Context // the context of the last Check
}

func (s *switchable) set(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *switchable) Check(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ctx = ctx
	return s.err
}

// syncedBuffer is an io.Writer that slog handlers may share.
type syncedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncedBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncedBuffer) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.b.String()
	s.b.Reset()
	return out
}

func TestReady(t *testing.T) {
	t.Parallel()
	errBypassed := errors.New("cache bypassed: listener reconnecting (host db-1)")
	var logs syncedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{
		Level:       slog.LevelInfo,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return dropTime(a) },
	}))
	checker := &switchable{}
	quiet, err := permhttp.Ready(permhttp.ReadyConfig{Checker: checker, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	detailed, err := permhttp.Ready(permhttp.ReadyConfig{Checker: checker, Detail: true})
	if err != nil {
		t.Fatal(err)
	}
	type ctxKey struct{}
	probe := func(h http.Handler, method string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/readyz", nil)
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, method))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if checker.ctx == nil || checker.ctx.Value(ctxKey{}) != method {
			t.Errorf("Check was not given the request's context")
		}
		return w
	}
	tests := []struct {
		name    string
		err     error
		h       http.Handler
		status  int
		body    string
		logLine string // "" for no line
	}{
		{"ready", nil, quiet, http.StatusOK, "ready\n", ""},
		{"lost", errBypassed, quiet, http.StatusServiceUnavailable, "not ready\n",
			`level=WARN msg="permhttp: not ready" err="cache bypassed: listener reconnecting (host db-1)"`},
		{"still lost: no new line", errBypassed, quiet, http.StatusServiceUnavailable, "not ready\n", ""},
		{"detail", errBypassed, detailed, http.StatusServiceUnavailable, "not ready: " + errBypassed.Error() + "\n", ""},
		{"back", nil, quiet, http.StatusOK, "ready\n", `level=INFO msg="permhttp: ready again"`},
		{"detail when ready", nil, detailed, http.StatusOK, "ready\n", ""},
	}
	for _, tt := range tests {
		checker.set(tt.err)
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			w := probe(tt.h, method)
			if w.Code != tt.status || w.Body.String() != tt.body {
				t.Errorf("%s %s: got %d %q, want %d %q", tt.name, method, w.Code, w.Body.String(), tt.status, tt.body)
			}
			for k, want := range map[string]string{"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"} {
				if got := w.Header().Get(k); got != want {
					t.Errorf("%s %s: %s %q, want %q", tt.name, method, k, got, want)
				}
			}
		}
		if got := strings.TrimSpace(logs.take()); got != tt.logLine {
			t.Errorf("%s: logged %q, want %q", tt.name, got, tt.logLine)
		}
	}
}

// dropTime removes the time from slog's text output, so that lines can be
// compared.
func dropTime(a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

func TestReadyFirstProbeFailsLogs(t *testing.T) {
	t.Parallel()
	var logs syncedBuffer
	h, err := permhttp.Ready(permhttp.ReadyConfig{
		Checker: permhttp.ReadinessFunc(func(context.Context) error { return errors.New("not synced") }),
		Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return dropTime(a) }})),
	})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("got %d, want 503", w.Code)
	}
	if got, want := strings.TrimSpace(logs.take()), `level=WARN msg="permhttp: not ready" err="not synced"`; got != want {
		t.Errorf("logged %q, want %q", got, want)
	}
}

func TestReadyConfigError(t *testing.T) {
	t.Parallel()
	h, err := permhttp.Ready(permhttp.ReadyConfig{})
	var ce *permhttp.ConfigError
	if h != nil || !errors.Is(err, permhttp.ErrInvalidConfig) || !errors.As(err, &ce) || ce.Field != "ReadyConfig.Checker" {
		t.Fatalf("got %v, %v; want a ConfigError on ReadyConfig.Checker", h != nil, err)
	}
}

// The membership client is a ReadinessChecker.
var _ permhttp.ReadinessChecker = (*membership.Client)(nil)

func TestReadyOverClient(t *testing.T) {
	t.Parallel()
	client, err := membership.New(context.Background(), pgtest.NewPool(t), membership.Config{})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = client.Close(context.Background())
		}
	})
	h, err := permhttp.Ready(permhttp.ReadyConfig{Checker: client, Detail: true})
	if err != nil {
		t.Fatal(err)
	}
	probe := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return w
	}
	select { // the listener's first sync; until then Check says why not
	case <-client.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("client not synced after 30 s")
	}
	if w := probe(); w.Code != http.StatusOK || w.Body.String() != "ready\n" {
		t.Fatalf("live client: got %d %q", w.Code, w.Body.String())
	}
	if err := client.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	closed = true
	want := "not ready: " + membership.ErrClosed.Error() + "\n"
	if w := probe(); w.Code != http.StatusServiceUnavailable || w.Body.String() != want {
		t.Fatalf("closed client: got %d %q, want 503 %q", w.Code, w.Body.String(), want)
	}
}
