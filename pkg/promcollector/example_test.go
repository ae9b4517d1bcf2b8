package promcollector_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/localcache"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/promcollector"
)

// The usual wiring: register a collector over the process's client and
// serve /metrics.
func ExampleNew() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	client, err := membership.New(ctx, pool, membership.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close(ctx)

	prometheus.MustRegister(promcollector.New(client))
	http.Handle("GET /metrics", promhttp.Handler())
}

// snapshot is a StatsSource that returns fixed counters, standing in for a
// *membership.Client so that the example runs without a database.
type snapshot membership.Stats

func (s snapshot) Stats() membership.Stats { return membership.Stats(s) }

// What a scrape reports, on a registry of its own, with a label that tells
// this client apart from others.
func ExampleWithConstLabels() {
	src := snapshot{
		Cache:    localcache.Stats{Hits: 90, Misses: 10, Entries: 7},
		Listener: listener.Stats{State: listener.Synced},
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(promcollector.New(src, promcollector.WithConstLabels(prometheus.Labels{"database": "billing"})))

	mfs, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, mf := range mfs { // sorted by name
		if !strings.HasPrefix(mf.GetName(), "orgperm_cache_") || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
		if v == 0 {
			continue
		}
		fmt.Printf("%s{%s=%q} %v\n", mf.GetName(), m.GetLabel()[0].GetName(), m.GetLabel()[0].GetValue(), v)
	}
	// Output:
	// orgperm_cache_entries{database="billing"} 7
	// orgperm_cache_hits_total{database="billing"} 90
	// orgperm_cache_misses_total{database="billing"} 10
}
