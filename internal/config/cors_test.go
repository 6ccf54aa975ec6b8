package config

import (
	"strings"
	"testing"
)

func TestValidateCORSErrors(t *testing.T) {
	site := func(cors string) string {
		return "sites:\n  - hosts: [example.org]\n    cors: " + cors + "\n    routes: [{path: /, respond: hi}]\n"
	}
	route := func(extra string) string {
		return "sites:\n  - hosts: [example.org]\n    routes:\n      - path: /\n        respond: hi\n        " + extra + "\n"
	}
	for _, tc := range []struct{ desc, yaml, want string }{
		{"credentials with star", site(`{origins: "*", credentials: true}`), `t.yaml:3:39: cors credentials with origins "*"`},
		{"credentials with star on a route", route(`cors: {origins: ["*"], credentials: true}`), `t.yaml:6:45: cors credentials with origins "*"`},
		{"no origins", site(`{methods: [GET]}`), `t.yaml:3:11: cors needs origins`},
		{"path in origin", site(`{origins: ["https://app.example.org/"]}`), `t.yaml:3:22: origin "https://app.example.org/" must be scheme://host[:port] alone`},
		{"null origin", site(`{origins: ["null"]}`), `t.yaml:3:22: origin "null" is sent by sandboxed frames`},
		{"no scheme", site(`{origins: [app.example.org]}`), `origin "app.example.org" is not scheme://host`},
		{"inner wildcard", site(`{origins: ["https://api.*.example.org"]}`), `a wildcard may only stand for the first label`},
		{"star beside others", site(`{origins: ["*", "https://a.test"]}`), `origins has "*" beside other origins`},
		{"star header with credentials", site(`{origins: ["https://a.test"], credentials: true, headers: ["*"]}`), `headers "*" with credentials`},
		{"lower-case method", site(`{origins: ["https://a.test"], methods: [get]}`), `method "get" must be upper case (GET)`},
		{"bad header", site(`{origins: ["https://a.test"], expose_headers: ["X Total"]}`), `expose_headers: "X Total" is not a valid header name`},
		{"fractional max age", site(`{origins: ["https://a.test"], max_age: 1500ms}`), `max_age 1.5s must be whole seconds`},
		{"rate limit without requests", route(`rate_limit: {per: 1s}`), `t.yaml:6:21: rate_limit needs requests of 1 or more`},
		{"negative burst", route(`rate_limit: {requests: 5, burst: -1}`), `rate_limit burst -1 must be 1 or more`},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant %q", err, tc.want)
			}
		})
	}
}

func TestValidateCORSAccepts(t *testing.T) {
	src := `sites:
  - hosts: [api.example.org]
    cors: "*"
    routes:
      - path: /
        respond: hi
      - path: /account
        respond: hi
        rate_limit: {requests: 10, per: 1s, burst: 20}
        cors:
          origins: [https://app.example.org, "https://*.example.org", "http://localhost:3000"]
          methods: [GET, PUT]
          headers: [Content-Type, Authorization]
          expose_headers: [X-Total]
          credentials: true
          max_age: 10m
`
	c, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Sites[0].CORS.Origins; len(got) != 1 || got[0] != "*" {
		t.Errorf("short form: origins %q", got)
	}
	if rl := c.Sites[0].Routes[1].RateLimit; rl == nil || rl.Requests != 10 || rl.Burst != 20 {
		t.Errorf("rate_limit %+v", rl)
	}
}
