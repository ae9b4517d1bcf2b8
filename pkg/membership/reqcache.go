package membership

import (
	"context"
	"sync"
)

// requestMemo is the request-scoped cache (the first seed's second
// strategy): the answers one request has already had, so repeated checks in
// the request cost nothing, even while the shared cache is bypassed.
type requestMemo struct {
	mu     sync.Mutex
	sets   map[Key]*PermissionSet
	active map[string]bool
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

func (m *requestMemo) set(org, user string) (*PermissionSet, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sets[Key{Org: org, User: user}]
	return s, ok
}

func (m *requestMemo) putSet(org, user string, s *PermissionSet) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sets == nil {
		m.sets = make(map[Key]*PermissionSet)
	}
	m.sets[Key{Org: org, User: user}] = s
}

func (m *requestMemo) userActive(user string) (bool, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.active[user]
	return a, ok
}

func (m *requestMemo) putUserActive(user string, active bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.active == nil {
		m.active = make(map[string]bool)
	}
	m.active[user] = active
}
