// Package hotpath holds `go test -bench` benchmarks for request-path code
// that runs on every request and whose packages have no benchmark of their
// own for it: a proxied HTTP/1.1 request through a whole gatehouse, the
// proxy handler end to end (header rewrite, upstream round trip on
// loopback), route lookup among many sites, placeholder filling and
// client-address resolution. Run with
//
//	go test -run '^$' -bench . -benchmem ./bench/hotpath
package hotpath
