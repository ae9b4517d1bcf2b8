package membership

import (
	"context"
	"sync"

	"github.com/orgperm/orgperm/pkg/localcache"
)

// requestMemo is the request-scoped cache (the first seed's second
// strategy): the answers one request has already had, so repeated checks in
// the request cost nothing, even while the shared cache is bypassed.
type requestMemo struct {
	mu      sync.Mutex
	answers map[localcache.Key]cached
}

// WithRequestCache returns a context that memoizes permission checks for
// its lifetime: the first check of an (org, user) goes to the client's
// cache or the database, later ones in the same context are answered from
// the memo. Use one per request (the HTTP middleware does); a memo never
// sees later writes, so do not keep it longer than a request.
func WithRequestCache(ctx context.Context) context.Context {
	o := optionsFrom(ctx)
	if o.memo != nil {
		return ctx
	}
	o.memo = &requestMemo{}
	return context.WithValue(ctx, optionsKey{}, &o)
}

// get returns the answer memoized for k.
func (m *requestMemo) get(k localcache.Key) (cached, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.answers[k]
	return v, ok
}

// put memoizes the answer for k.
func (m *requestMemo) put(k localcache.Key, v cached) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.answers == nil {
		m.answers = make(map[localcache.Key]cached)
	}
	m.answers[k] = v
}
