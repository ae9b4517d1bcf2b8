// Package faultproxy is a TCP proxy that a test or the soak puts between
// PostgreSQL clients and the server to make network faults on demand: a
// black hole (bytes dropped both ways, no FIN, no RST: a peer that vanished,
// a NAT that forgot the flow) with [Proxy.Blackhole], and every connection
// cut at once with [Proxy.CutAll].
//
// It is machinery of orgperm's own tests (internal/): [New] ties a proxy to
// a test, [Start] gives a program one to Close.
package faultproxy
