package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// chartFile is the chart written next to RESULTS.md.
const chartFile = "results.png"

var (
	colBackground = color.RGBA{255, 255, 255, 255}
	colText       = color.RGBA{30, 30, 30, 255}
	colGrid       = color.RGBA{225, 225, 225, 255}
	colOurs       = color.RGBA{31, 119, 180, 255}
	colOursAlt    = color.RGBA{120, 170, 215, 255}
	colPeer       = color.RGBA{255, 127, 14, 255}
	colLimit      = color.RGBA{44, 160, 44, 255}
)

type bar struct {
	label string
	value float64
	text  string
	col   color.Color
}

type barGroup struct {
	title string
	bars  []bar
}

// chart draws horizontal bar groups; each group of a linear panel is scaled
// to its own largest bar, a log panel shares one decade scale.
type chart struct {
	img *image.RGBA
	y   int
}

const (
	chartWidth = 1000
	labelWidth = 300
	barHeight  = 16
	barGap     = 4
	valueWidth = 110
)

func subjectColor(name string) color.Color {
	switch {
	case name == subjOurs || name == subjOursRedlock:
		return colOurs
	case strings.HasPrefix(name, "distlock"):
		return colOursAlt
	case strings.HasPrefix(name, "limit"):
		return colLimit
	}
	return colPeer
}

func (c *chart) text(x, y int, s string, col color.Color) {
	d := font.Drawer{Dst: c.img, Src: image.NewUniform(col), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(asciiReplacer.Replace(s))
}

// asciiReplacer maps the few non-ASCII characters of labels to ASCII, the
// only glyphs the built-in font has.
var asciiReplacer = strings.NewReplacer("÷", "/", "×", "x", "µ", "u", "—", "-", "…", "...", "–", "-", "≥", ">=", "≤", "<=")

func (c *chart) rect(x0, y0, x1, y1 int, col color.Color) {
	draw.Draw(c.img, image.Rect(x0, y0, x1, y1), image.NewUniform(col), image.Point{}, draw.Src)
}

// linearGroups draws groups, each scaled to its own maximum.
func (c *chart) linearGroups(title string, groups []barGroup) {
	c.text(10, c.y+14, title, colText)
	c.y += 26
	x0, x1 := labelWidth, chartWidth-valueWidth
	for _, g := range groups {
		c.text(10, c.y+12, g.title, colText)
		c.y += 18
		top := 0.0
		for _, b := range g.bars {
			if !math.IsNaN(b.value) {
				top = math.Max(top, b.value)
			}
		}
		for _, b := range g.bars {
			c.text(24, c.y+12, b.label, colText)
			c.rect(x0, c.y, x1, c.y+barHeight, colGrid)
			if !math.IsNaN(b.value) && top > 0 {
				c.rect(x0, c.y, x0+int(float64(x1-x0)*b.value/top), c.y+barHeight, b.col)
			}
			c.text(x1+6, c.y+12, b.text, colText)
			c.y += barHeight + barGap
		}
		c.y += 8
	}
}

// logGroups draws groups on one log10 scale from lo to hi.
func (c *chart) logGroups(title string, groups []barGroup, lo, hi float64, unit string) {
	c.text(10, c.y+14, title, colText)
	c.y += 26
	x0, x1 := labelWidth, chartWidth-valueWidth
	pos := func(v float64) int {
		v = math.Min(math.Max(v, lo), hi)
		return x0 + int(float64(x1-x0)*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo)))
	}
	// Decade ticks.
	for d := lo; d <= hi*1.0001; d *= 10 {
		c.text(pos(d)-8, c.y+12, trimFloat(d)+unit, colText)
	}
	c.y += 18
	gridTop := c.y
	for _, g := range groups {
		c.text(10, c.y+12, g.title, colText)
		c.y += 18
		for _, b := range g.bars {
			c.text(24, c.y+12, b.label, colText)
			c.rect(x0, c.y, x1, c.y+barHeight, colGrid)
			if !math.IsNaN(b.value) && b.value > 0 {
				c.rect(x0, c.y, pos(b.value), c.y+barHeight, b.col)
			}
			c.text(x1+6, c.y+12, b.text, colText)
			c.y += barHeight + barGap
		}
		c.y += 8
	}
	for d := lo; d <= hi*1.0001; d *= 10 {
		c.rect(pos(d), gridTop, pos(d)+1, c.y-8, colText)
	}
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%g", v)
	return s
}

// writeChart draws throughput against peers and the C1 hand-off latency.
func (b *bench) writeChart(path string) error {
	var tput []barGroup
	add := func(id, title, metric string, subjects []string) {
		s := b.sets[id]
		if s == nil {
			return
		}
		g := barGroup{title: title}
		for _, name := range subjects {
			v := s.med(name, metric)
			txt := formatValue("rate", v)
			g.bars = append(g.bars, bar{label: shorten(name), value: v, text: txt, col: subjectColor(name)})
		}
		tput = append(tput, g)
	}
	u1 := []string{subjOurs, subjOursNoPipe, subjRedislock, subjLimit}
	add("U1/1", "U1 uncontended obtain+release, 1 goroutine (cycles/s)", "rate", u1)
	add("U1/50", "U1 uncontended obtain+release, 50 goroutines (cycles/s)", "rate", u1)
	add("R3", "R3 Redlock, 3 nodes, 50 goroutines (cycles/s)", "rate", []string{subjOursRedlock, subjRedsync})
	add("R5", "R5 Redlock, 5 nodes, 50 goroutines (cycles/s)", "rate", []string{subjOursRedlock, subjRedsync})
	c1 := []string{subjOurs, subjOursNoPipe, subjOursBarging, subjRedislock1, subjRedislock10, subjRedsyncC1}
	add("C1", fmt.Sprintf("C1 contention, %d×%d goroutines on one key (critical sections/s)", c1Shape4x4.lockers, c1Shape4x4.goroutines), "rate", c1)
	c16 := c1[:4]
	add("C16", fmt.Sprintf("C16 contention, %d×%d goroutine on one key (critical sections/s)", c1Shape16x1.lockers, c1Shape16x1.goroutines), "rate", c16)

	// Contention latencies: two light/dark pairs per library and shape.
	pairs := func(metrics [2]string, labels [2]string) []barGroup {
		var groups []barGroup
		for _, shape := range []struct {
			id    string
			names []string
		}{{"C1", c1}, {"C16", c16}} {
			s := b.sets[shape.id]
			if s == nil {
				continue
			}
			for _, name := range shape.names {
				g := barGroup{title: shape.id + " " + name}
				for i, m := range metrics {
					v := s.med(name, m)
					col := subjectColor(name)
					if i == 0 {
						col = lighter(col)
					}
					g.bars = append(g.bars, bar{label: labels[i], value: v, text: formatValue("ms", v), col: col})
				}
				groups = append(groups, g)
			}
		}
		return groups
	}
	lat := pairs([2]string{"p50", "p99"}, [2]string{"hand-off p50", "hand-off p99"})
	waits := pairs([2]string{"wait99", "maxwait"}, [2]string{"Obtain wait p99", "longest wait"})

	height := 60
	for _, g := range tput {
		height += 26 + (barHeight+barGap)*len(g.bars)
	}
	for _, g := range append(lat, waits...) {
		height += 26 + (barHeight+barGap)*len(g.bars)
	}
	height += 120
	c := &chart{img: image.NewRGBA(image.Rect(0, 0, chartWidth, height+60))}
	c.rect(0, 0, chartWidth, height+60, colBackground)
	c.y = 6
	c.linearGroups("Throughput against peers (higher is better; each group scaled to its largest bar)", tput)
	c.y += 10
	c.logGroups("C1 and C16 hand-off to another goroutine, Release call to its Obtain return (lower is better; log scale)",
		lat, 0.01, 1000, "ms")
	c.y += 10
	c.logGroups("C1 and C16 waiting as callers see it, Obtain call to return (lower is fairer; log scale)",
		waits, 0.1, 10000, "ms")

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, c.img.SubImage(image.Rect(0, 0, chartWidth, c.y+6))); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func lighter(col color.Color) color.Color {
	r, g, b, _ := col.RGBA()
	mix := func(v uint32) uint8 { return uint8((v>>8)/2 + 127) }
	return color.RGBA{mix(r), mix(g), mix(b), 255}
}

func shorten(s string) string {
	const max = 40
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}
