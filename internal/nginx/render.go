package nginx

import (
	"fmt"
	"sort"
	"strings"
)

// site is one gatehouse site in the making: a server block, or the part of
// one split off by an if ($host = …) redirect.
type site struct {
	from   *srv
	head   []string
	hosts  []string
	routes []*route
	tlsOff bool
	// tlsNotes go above tls:; a site split off by if ($host = …) shares
	// its server's and does not repeat them.
	tlsNotes []string
	// commented sites could not be carried over (a catch-all with
	// content) and are written as comments for the user to finish.
	commented bool
}

// sites turns server blocks into gatehouse sites. gatehouse keeps one site
// per host and redirects HTTP to HTTPS for sites with TLS by itself, so a
// port-80 server that only redirects to HTTPS (certbot's) folds into the
// HTTPS site of the same names, and a catch-all that answers 404 or 444 is
// covered by gatehouse's 404 for unknown hosts.
func (c *conv) sites() []*site {
	sslOwner := map[string]*srv{}
	plainOwner := map[string]*srv{}
	for _, s := range c.servers {
		if !s.ssl {
			continue
		}
		kept := s.hosts[:0:0]
		for _, h := range s.hosts {
			if prev := sslOwner[h]; prev != nil {
				c.note(&s.notes, &Directive{Name: "server_name", Args: []string{h}, Quoted: []bool{false}, Pos: s.pos}, false,
					"not carried over: %s is already served over HTTPS by the server at %s (nginx, too, uses the first)", h, prev.pos)
				continue
			}
			sslOwner[h] = s
			kept = append(kept, h)
		}
		s.hosts = kept
	}
	folded := map[*srv][]string{} // notes moved from port-80 servers into HTTPS sites
	var out []*site
	for _, s := range c.servers {
		var extra []*site
		var gone []string // hosts whose HTTPS site covers this plain server
		for _, h := range s.hostOrder {
			hr := s.hostRedirect[h]
			if !contains(s.hosts, h) {
				c.note(&s.notes, hr.d, false, "not carried over: %s is not one of this server's names", h)
				continue
			}
			same := hr.rd.to == "https://{host}{uri}" || hr.rd.to == "https://"+h+"{uri}"
			switch {
			case !s.ssl && sslOwner[h] != nil && same:
				c.note(&s.notes, hr.d, true, "covered: gatehouse redirects HTTP to HTTPS for every site with TLS (301 for GET and HEAD, 308 otherwise)")
				s.hosts = remove(s.hosts, h)
				gone = append(gone, h)
			case !s.ssl && sslOwner[h] != nil:
				c.note(&s.notes, hr.d, false, "changed: gatehouse redirects http://%s to https://%s first; the redirect to %s is not carried over for plain HTTP", h, h, hr.rd.to)
				s.hosts = remove(s.hosts, h)
				gone = append(gone, h)
			case s.ssl && same:
				c.note(&s.notes, hr.d, true, "covered: gatehouse redirects HTTP to HTTPS for every site with TLS")
			default:
				c.note(&s.notes, hr.d, true, "carried over as a site of its own for %s", h)
				s.hosts = remove(s.hosts, h)
				extra = append(extra, &site{from: s, hosts: []string{h}, tlsOff: !s.ssl,
					routes: []*route{{path: "/", redirect: hr.rd}}})
			}
		}
		if !s.ssl {
			covered := len(gone)
			for _, h := range s.hosts {
				if sslOwner[h] == nil {
					continue
				}
				gone = append(gone, h)
				if !s.redirectsToHTTPS() {
					c.note(&s.notes, &Directive{Name: "server", Pos: s.pos}, false,
						"not carried over for %s: gatehouse redirects HTTP to HTTPS for sites with TLS, so this port-80 server's routes are not used", h)
				}
			}
			for _, h := range gone[covered:] {
				s.hosts = remove(s.hosts, h)
			}
			switch {
			case len(gone) == 0 || s.wholeDir == nil:
			case s.whole.respond != nil:
				c.note(&s.notes, s.wholeDir, true, "covered: gatehouse answers 404 for hosts no site names")
			case s.redirectsToHTTPS():
				c.note(&s.notes, s.wholeDir, true, "covered: gatehouse redirects HTTP to HTTPS for every site with TLS (301 for GET and HEAD, 308 otherwise)")
			}
			for _, h := range s.hosts {
				if prev := plainOwner[h]; prev != nil {
					c.note(&s.notes, &Directive{Name: "server_name", Args: []string{h}, Quoted: []bool{false}, Pos: s.pos}, false,
						"not carried over: %s is already served by the server at %s; gatehouse serves every site on every listener", h, prev.pos)
					s.hosts = remove(s.hosts, h)
					continue
				}
				plainOwner[h] = s
			}
			if len(s.hosts) == 0 && len(gone) > 0 {
				owner := sslOwner[gone[0]]
				folded[owner] = append(folded[owner], fmt.Sprintf("and server at %s (plain HTTP) for %s, folded into this site:", s.pos, strings.Join(gone, ", ")))
				folded[owner] = append(folded[owner], s.notes...)
				out = append(out, extra...)
				continue
			}
		} else if s.plain && !s.schemeIdiom && s.plainListen != nil {
			c.note(&s.notes, s.plainListen, false, "changed: this server also answered plain HTTP; gatehouse redirects HTTP to HTTPS for sites with TLS")
		}
		if s.defaultServer != nil && len(s.hosts) > 0 {
			c.note(&s.notes, s.defaultServer, false, "default_server not carried over: gatehouse answers 404 for hosts no site names instead of sending them here")
		}
		if len(s.hosts) == 0 {
			if s.catchAll && s.onlyRefuses() {
				c.note(&c.top, &Directive{Name: "server", Pos: s.pos}, true, "a catch-all (no names, or _): covered: gatehouse answers 404 for hosts no site names")
				c.top = append(c.top, s.notes...)
			} else if len(s.routes) > 0 {
				c.note(&s.notes, &Directive{Name: "server", Pos: s.pos}, false,
					"not carried over: this server has no host names gatehouse can serve (a catch-all, or regex names); gatehouse answers 404 for unknown hosts. Add hosts: below to keep it")
				out = append(out, &site{from: s, head: s.notes, routes: s.routes, tlsOff: !s.ssl, tlsNotes: s.tlsNotes, commented: true})
			} else {
				c.top = append(c.top, s.notes...)
			}
			out = append(out, extra...)
			continue
		}
		out = append(out, &site{from: s, head: s.notes, hosts: s.hosts, routes: s.routes, tlsOff: !s.ssl, tlsNotes: s.tlsNotes})
		out = append(out, extra...)
	}
	for _, st := range out {
		if st.from != nil && len(folded[st.from]) > 0 && len(st.hosts) > 0 && !st.commented {
			st.head = append(st.head, folded[st.from]...)
			delete(folded, st.from)
		}
	}
	return out
}

// redirectsToHTTPS reports whether a plain server only sends clients to
// HTTPS (return 301 https://$host$request_uri, or certbot's if-and-404).
func (s *srv) redirectsToHTTPS() bool {
	if s.whole != nil && s.whole.redirect != nil {
		return strings.HasPrefix(s.whole.redirect.to, "https://")
	}
	if len(s.hostOrder) > 0 && (s.whole == nil || s.whole.respond != nil) {
		return len(s.routes) <= 1
	}
	return s.schemeIdiom
}

// onlyRefuses reports whether a server answers nothing but an error or a
// redirect, as catch-all servers do.
func (s *srv) onlyRefuses() bool {
	for _, r := range s.routes {
		if r.respond == nil || r.respond.status < 400 {
			if r.redirect == nil {
				return false
			}
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func remove(list []string, s string) []string {
	out := list[:0:0]
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

// ---- writing -------------------------------------------------------------

func (c *conv) render(path string) []byte {
	sites := c.sites()
	doc := &ymap{}
	if len(c.listenHTTP) > 0 || len(c.listenHTTPS) > 0 {
		l := &ymap{}
		for _, part := range []struct {
			key string
			set []*listenAddrSrc
		}{{"http", c.listenHTTP}, {"https", c.listenHTTPS}} {
			if len(part.set) == 0 {
				continue
			}
			var addrs []string
			var pos []Pos
			for _, a := range part.set {
				addrs = append(addrs, a.addr)
				pos = append(pos, a.pos...)
			}
			e := l.add(part.key, flow(addrs))
			e.line = "listen at " + posList(pos)
		}
		doc.add("listen", mapping(l))
		if len(c.listenHTTP) > 1 || len(c.listenHTTPS) > 1 {
			doc.entries[0].head = append(doc.entries[0].head, "gatehouse serves every site on every listener below, where nginx bound servers to ports.")
		}
	}
	if len(c.serverOpts) > 0 || len(c.trusted) > 0 {
		s := &ymap{entries: c.serverOpts}
		if len(c.trusted) > 0 {
			s.add("trusted_proxies", flow(c.trusted)).line = "set_real_ip_from"
		}
		doc.add("server", mapping(s))
	}
	if c.accessLog != "" {
		l := &ymap{}
		l.add("access", str(c.accessLog)).line = "access_log at " + posList(c.accessLogPos)
		doc.add("log", mapping(l))
	}
	if c.acmeUsed {
		a := &ymap{}
		if c.opts.Email != "" {
			a.add("email", str(c.opts.Email))
		}
		t := &ymap{}
		if len(a.entries) == 0 {
			t.add("acme", raw("{}")).line = "add email: you@example.org to hear from Let's Encrypt about expiring certificates"
		} else {
			t.add("acme", mapping(a))
		}
		doc.add("tls", mapping(t))
	}
	var items []*ymap
	for _, st := range sites {
		items = append(items, c.siteYAML(st))
	}
	if len(items) > 0 {
		doc.add("sites", list(items))
	}

	var w ywriter
	w.comments(0, []string{
		"gatehouse config converted from the nginx config " + path + ".",
		"Comments of the form FILE:LINE: DIRECTIVE: WHY name each nginx directive",
		"that was not carried over as written: \"covered\" ones need no setting here.",
	})
	if len(c.top) > 0 {
		w.sb.WriteByte('\n')
		w.comments(0, c.top)
	}
	for _, e := range doc.entries {
		w.sb.WriteByte('\n')
		w.mapping(0, []*yentry{e}, "")
	}
	if len(items) == 0 {
		w.sb.WriteString("\n# No server block was found: add sites: here.\n")
	}
	return []byte(w.sb.String())
}

// posList writes positions compactly: a.conf:3,4 b.conf:7.
func posList(ps []Pos) string {
	var files []string
	lines := map[string][]string{}
	for _, p := range ps {
		if _, ok := lines[p.File]; !ok {
			files = append(files, p.File)
		}
		lines[p.File] = append(lines[p.File], fmt.Sprint(p.Line))
	}
	var parts []string
	for _, f := range files {
		parts = append(parts, f+":"+strings.Join(lines[f], ","))
	}
	return strings.Join(parts, " ")
}

func (c *conv) siteYAML(st *site) *ymap {
	m := &ymap{commented: st.commented}
	s := st.from
	m.head = append([]string{fmt.Sprintf("server at %s", s.pos)}, st.head...)
	hosts := st.hosts
	if st.commented {
		hosts = []string{"example.org"}
	}
	m.add("hosts", flow(hosts))
	switch {
	case st.tlsOff:
		e := m.add("tls", raw("off"))
		e.line = "nginx served this over plain HTTP only; remove this line for HTTPS"
		e.head = st.tlsNotes
	case s.tls != nil:
		m.add("tls", mapping(s.tls)).head = st.tlsNotes
	default:
		m.add("tls", raw(s.tlsMode)).head = st.tlsNotes
	}
	var routes []*ymap
	seen := map[string]Pos{}
	for _, r := range st.routes {
		key := r.path
		if r.regex != "" {
			key = "~" + r.regex
		} else if r.exact {
			key = "=" + r.path
		}
		if prev, dup := seen[key]; dup {
			c.note(&m.head, &Directive{Name: "location", Args: []string{key}, Quoted: []bool{false}, Pos: r.pos}, false,
				"not carried over: the same path is already routed from %s", prev)
			continue
		}
		seen[key] = r.pos
		routes = append(routes, routeYAML(r))
	}
	if len(routes) == 0 {
		routes = append(routes, &ymap{head: []string{"nothing in this server could be carried over; it answers 404"},
			entries: []*yentry{{key: "path", val: str("/")}, {key: "respond", val: mapping(&ymap{entries: []*yentry{{key: "status", val: num(404)}}})}}})
	}
	m.add("routes", list(routes))
	return m
}

func routeYAML(r *route) *ymap {
	m := &ymap{head: r.notes}
	if r.regex != "" {
		m.add("regex", str(r.regex))
	} else {
		m.add("path", str(r.path))
	}
	if r.exact {
		m.add("exact", raw("true"))
	}
	if r.final {
		m.add("final", raw("true"))
	}
	if r.strip && r.path != "/" && r.regex == "" {
		m.add("strip_prefix", raw("true"))
	}
	if r.maxBody != "" {
		m.add("max_body", str(r.maxBody))
	}
	if r.noLog {
		m.add("access_log", raw("false"))
	}
	switch {
	case r.proxy != nil:
		m.add("proxy", proxyYAML(r.proxy))
	case r.static != nil:
		st := r.static
		if len(st.index) == 0 && !st.spa && !st.browse {
			m.add("static", str(st.root))
			break
		}
		sm := &ymap{}
		sm.add("root", str(st.root))
		if len(st.index) > 0 {
			sm.add("index", flow(st.index))
		}
		if st.spa {
			sm.add("spa", raw("true"))
		}
		if st.fallback != "" {
			sm.add("fallback", str(st.fallback))
		}
		if st.browse {
			sm.add("browse", raw("true"))
		}
		m.add("static", mapping(sm))
	case r.redirect != nil:
		rm := &ymap{}
		rm.add("to", str(r.redirect.to))
		rm.add("status", num(r.redirect.status))
		m.add("redirect", mapping(rm))
	case r.respond != nil:
		rm := &ymap{}
		if r.respond.body != "" {
			rm.add("body", str(r.respond.body))
		}
		rm.add("status", num(r.respond.status))
		m.add("respond", mapping(rm))
	}
	return m
}

func proxyYAML(p *proxyOut) *ynode {
	pm := &ymap{}
	if len(p.to) == 1 {
		pm.add("to", str(p.to[0]))
	} else {
		pm.add("to", flow(p.to))
	}
	if p.host != "" {
		e := pm.add("host", str(p.host))
		if p.host == "upstream" {
			e.line = "as nginx without proxy_set_header Host; remove to send the client's Host"
		}
	}
	if p.policy != "" {
		pm.add("policy", str(p.policy))
	}
	for _, t := range []struct{ k, v string }{{"dial_timeout", p.dial}, {"header_timeout", p.header}, {"idle_timeout", p.idle}} {
		if t.v != "" {
			pm.add(t.k, raw(t.v))
		}
	}
	if p.maxIdle > 0 {
		pm.add("max_idle", num(p.maxIdle)).line = "upstream keepalive"
	}
	if p.ca != "" {
		pm.add("ca", str(p.ca))
	}
	if h := headerOps(p.set, nil, p.remove); h != nil {
		pm.add("headers", h)
	}
	if h := headerOps(nil, p.respAdd, p.respRemove); h != nil {
		pm.add("response_headers", h)
	}
	if len(pm.entries) == 1 && len(p.to) == 1 {
		return str(p.to[0])
	}
	return mapping(pm)
}

func headerOps(set, add []kv, remove []string) *ynode {
	if len(set)+len(add)+len(remove) == 0 {
		return nil
	}
	m := &ymap{}
	for _, part := range []struct {
		key string
		kvs []kv
	}{{"set", set}, {"add", add}} {
		if len(part.kvs) == 0 {
			continue
		}
		hm := &ymap{}
		done := map[string]bool{}
		for _, h := range part.kvs {
			if done[strings.ToLower(h.k)] {
				continue // a map holds one value per name
			}
			done[strings.ToLower(h.k)] = true
			hm.add(quote(h.k, false), str(h.v))
		}
		m.add(part.key, mapping(hm))
	}
	if len(remove) > 0 {
		r := append([]string(nil), remove...)
		sort.Strings(r)
		m.add("remove", flow(r))
	}
	return mapping(m)
}
