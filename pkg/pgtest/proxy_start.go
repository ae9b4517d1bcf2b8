package pgtest

import (
	"fmt"
	"net"
)

// StartProxy is [NewProxy] for programs that are not tests (the soak): it
// starts a proxy on 127.0.0.1 (a free port) to target (host:port), which
// the caller must Close.
func StartProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("pgtest: proxy: %w", err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[*proxyConn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Close stops a proxy from [StartProxy] and closes every connection it
// holds. It is idempotent.
func (p *Proxy) Close() {
	p.close()
}
