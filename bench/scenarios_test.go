package main

import (
	"slices"
	"testing"
)

func TestVisitOrder(t *testing.T) {
	for _, tc := range []struct{ peers, want []string }{
		{proxies, []string{"direct", "nginx", "gatehouse", "haproxy", "caddy", "go-stdlib"}},
		{fileServers, []string{"nginx", "gatehouse", "caddy", "go-stdlib"}},
		{[]string{"caddy", "gatehouse"}, []string{"gatehouse", "caddy"}},
		{[]string{"nginx", "caddy"}, []string{"nginx", "caddy"}},
	} {
		if got := visitOrder(tc.peers); !slices.Equal(got, tc.want) {
			t.Errorf("visitOrder(%v) = %v, want %v", tc.peers, got, tc.want)
		}
	}
	if !slices.Equal(proxies, []string{"direct", "nginx", "haproxy", "caddy", "go-stdlib", "gatehouse"}) {
		t.Errorf("visitOrder changed its argument: %v", proxies)
	}
}
