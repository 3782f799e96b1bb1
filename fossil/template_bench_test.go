package fossil_test

import (
	"testing"

	"github.com/fossil-events/fossil/fossil"
)

// BenchmarkTemplateMatch measures fossil.Template.Match, which the feed runs
// for every live frame and every subscriber: a hit and a miss for each
// kind of template, and a subscriber with several templates.
func BenchmarkTemplateMatch(b *testing.B) {
	for _, bb := range []struct {
		name     string
		template string
		stream   string
	}{
		{"Literal/Hit", "orders/42", "orders/42"},
		{"Literal/Miss", "orders/42", "orders/43"},
		{"Variable/Hit", "visits/{id}", "visits/123"},
		{"Variable/MissPrefix", "visits/{id}", "orders/123"},
		{"Variable/MissSlash", "visits/{id}", "visits/1/2"},
		{"TwoVariables/Hit", "tenants/{tenant}/orders/{id}", "tenants/acme/orders/42"},
		{"Reserved/Hit", "orders/{+rest}", "orders/2026/11/22/42"},
		{"All/Hit", "{+all}", "bench/run/s17"},
	} {
		b.Run(bb.name, func(b *testing.B) {
			tmpl, err := fossil.ParseTemplate("bench", bb.template)
			if err != nil {
				b.Fatal(err)
			}
			want := tmpl.Match(bb.stream)
			b.ReportAllocs()
			for b.Loop() {
				if tmpl.Match(bb.stream) != want {
					b.Fatal("unstable result")
				}
			}
		})
	}
	b.Run("Templates/FourMiss", func(b *testing.B) {
		ts, err := fossil.ParseTemplates("bench", []string{"orders/{id}", "visits/{id}", "carts/{+rest}", "users/42"})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if ts.Match("payments/7") {
				b.Fatal("matched")
			}
		}
	})
}
