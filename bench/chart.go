package main

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
	"time"
)

// Chart geometry and colours.
const (
	chartW   = 900
	panel1H  = 300
	panel2H  = 340
	labelW   = 250 // left margin of the hit panel, for the strategy names
	plotR    = 110 // right margin of the hit panel, for the value labels
	colorOrg = "#2f7d32"
	colorAlt = "#9e9e9e"
	colorP50 = "#64b5f6"
	colorP99 = "#1565c0"
	colorR50 = "#ffb74d"
	colorR99 = "#e65100"
)

// svgDoc accumulates SVG elements.
type svgDoc struct{ b strings.Builder }

func (s *svgDoc) f(format string, args ...any) { fmt.Fprintf(&s.b, format+"\n", args...) }

func (s *svgDoc) text(x, y float64, anchor, size, weight, fill, txt string) {
	s.f(`<text x="%.1f" y="%.1f" text-anchor="%s" font-size="%s" font-weight="%s" fill="%s">%s</text>`,
		x, y, anchor, size, weight, fill, html.EscapeString(txt))
}

func (s *svgDoc) rect(x, y, w, h float64, fill string) {
	s.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`, x, y, w, h, fill)
}

func (s *svgDoc) line(x1, y1, x2, y2 float64, stroke string, dash bool) {
	d := ""
	if dash {
		d = ` stroke-dasharray="5,4"`
	}
	s.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1"%s/>`, x1, y1, x2, y2, stroke, d)
}

// chartSVG draws two panels: hit latency per strategy as horizontal bars on
// a log scale, and the invalidation delay's p50 and p99 by instance count
// (orgperm per instance, and Redis's DEL round trip) on a linear scale.
func chartSVG(res results) string {
	var s svgDoc
	h := panel1H + panel2H
	s.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif">`, chartW, h, chartW, h)
	s.rect(0, 0, chartW, float64(h), "#ffffff")
	hitPanel(&s, res)
	invalPanel(&s, res, panel1H)
	s.f(`</svg>`)
	return s.b.String()
}

func hitPanel(s *svgDoc, res results) {
	names := []string{nameNoCache, nameRedis, nameRedisBool, nameRequest, nameOrgperm}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, n := range names {
		v := res.Hit[n].NsPerOp
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	// One decade below the fastest, so that its bar shows.
	d0, d1 := math.Floor(math.Log10(lo))-1, math.Ceil(math.Log10(hi))
	if d1 <= d0 {
		d1 = d0 + 1
	}
	x0, x1 := float64(labelW), float64(chartW-plotR)
	top, bottom := 60.0, float64(panel1H-45)
	xOf := func(ns float64) float64 { return x0 + (math.Log10(ns)-d0)/(d1-d0)*(x1-x0) }

	s.text(20, 30, "start", "18", "bold", "#212121", "Hit latency per check (ns/op, log scale; shorter is faster)")
	for d := d0; d <= d1; d++ {
		x := xOf(math.Pow(10, d))
		s.line(x, top-8, x, bottom, "#e0e0e0", false)
		s.text(x, bottom+18, "middle", "12", "normal", "#616161", fmtTick(math.Pow(10, d)))
	}
	s.line(x0, bottom, x1, bottom, "#9e9e9e", false)
	slot := (bottom - top) / float64(len(names))
	for i, n := range names {
		v := res.Hit[n].NsPerOp
		y := top + float64(i)*slot
		color := colorAlt
		if n == nameOrgperm {
			color = colorOrg
		}
		s.rect(x0, y+slot*0.15, math.Max(xOf(v)-x0, 2), slot*0.7, color)
		s.text(x0-10, y+slot*0.5+5, "end", "14", "normal", "#212121", n)
		s.text(xOf(v)+6, y+slot*0.5+5, "start", "13", "bold", "#212121", fmtNs(v))
	}
	s.text(x0, float64(panel1H-8), "start", "12", "normal", "#616161",
		fmt.Sprintf("orgperm: %s faster than a query per check, %s faster than the Redis cache",
			fmtRatio(res.Hit[nameNoCache].NsPerOp/res.Hit[nameOrgperm].NsPerOp), fmtRatio(res.Hit[nameRedis].NsPerOp/res.Hit[nameOrgperm].NsPerOp)))
}

func invalPanel(s *svgDoc, res results, y0 int) {
	top, bottom := float64(y0)+80, float64(y0+panel2H-50)
	x0, x1 := 90.0, float64(chartW-30)
	ri := res.RedisInval
	series := []struct {
		label string
		color string
		value func(invalResult) time.Duration
	}{
		{"orgperm p50", colorP50, func(r invalResult) time.Duration { return r.Delivery.pct(50) }},
		{"orgperm p99", colorP99, func(r invalResult) time.Duration { return r.Delivery.pct(99) }},
		{"Redis write+DEL p50", colorR50, func(invalResult) time.Duration { return ri.WriteDel.pct(50) }},
		{"Redis write+DEL p99", colorR99, func(invalResult) time.Duration { return ri.WriteDel.pct(99) }},
	}
	maxV := float64(time.Millisecond)
	for _, r := range res.Inval {
		for _, se := range series {
			maxV = math.Max(maxV, float64(se.value(r)))
		}
	}
	step := niceStep(maxV / 5)
	maxV = math.Ceil(maxV/step) * step
	yOf := func(v float64) float64 { return bottom - v/maxV*(bottom-top) }

	s.text(20, float64(y0)+30, "start", "18", "bold", "#212121", "Invalidation delay to other instances (raw SQL write to eviction)")
	lx := 20.0
	for _, se := range series {
		s.rect(lx, float64(y0)+45, 14, 14, se.color)
		s.text(lx+20, float64(y0)+57, "start", "13", "normal", "#212121", se.label)
		lx += 20 + 7.5*float64(len(se.label)) + 24 // 13 px text is about 7.5 px a character
	}
	s.line(lx-10, float64(y0)+52, lx+20, float64(y0)+52, "#c62828", true)
	s.text(lx+26, float64(y0)+57, "start", "13", "normal", "#212121", "1 ms target")
	for v := 0.0; v <= maxV+step/2; v += step {
		y := yOf(v)
		s.line(x0, y, x1, y, "#eeeeee", false)
		s.text(x0-8, y+4, "end", "12", "normal", "#616161", fmtTick(v))
	}
	s.line(x0, bottom, x1, bottom, "#9e9e9e", false)
	s.line(x0, yOf(float64(time.Millisecond)), x1, yOf(float64(time.Millisecond)), "#c62828", true)

	group := (x1 - x0) / float64(len(res.Inval))
	bar := group * 0.7 / float64(len(series))
	for gi, r := range res.Inval {
		gx := x0 + float64(gi)*group + group*0.15
		for si, se := range series {
			v := float64(se.value(r))
			x := gx + float64(si)*bar
			s.rect(x+1, yOf(v), bar-2, bottom-yOf(v), se.color)
			s.text(x+bar/2, yOf(v)-5, "middle", "11", "normal", "#212121", fmtNs(v))
		}
		label := fmt.Sprintf("%d instances", r.K)
		if r.K == 1 {
			label = "1 instance"
		}
		s.text(x0+float64(gi)*group+group/2, bottom+20, "middle", "14", "normal", "#212121", label)
	}
	s.text(x0, float64(y0+panel2H-8), "start", "12", "normal", "#616161",
		"Both from just before the write's Exec: orgperm to each instance's OnInvalidate; Redis (one shared server) to the DEL's reply.")
}

// fmtTick formats an axis value given in nanoseconds: "0", "500 ns",
// "1 µs", "1.5 ms".
func fmtTick(ns float64) string {
	units := []struct {
		div  float64
		name string
	}{{1e9, "s"}, {1e6, "ms"}, {1e3, "µs"}, {1, "ns"}}
	if ns == 0 {
		return "0"
	}
	for _, u := range units {
		if ns >= u.div {
			return strconv.FormatFloat(ns/u.div, 'f', -1, 64) + " " + u.name
		}
	}
	return strconv.FormatFloat(ns, 'f', -1, 64) + " ns"
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
