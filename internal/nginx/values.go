package nginx

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// nginx variables that have a gatehouse placeholder. $http_NAME becomes
// {header.Name} and $server_name the server's first name; see expand.
var placeholders = map[string]string{
	"host":           "{host}",
	"http_host":      "{host}",
	"remote_addr":    "{client_ip}",
	"scheme":         "{scheme}",
	"request_method": "{method}",
	"uri":            "{path}",
	"document_uri":   "{path}",
	"request_uri":    "{uri}",
	"args":           "{query}",
	"query_string":   "{query}",
}

// expand turns nginx variables in s into gatehouse placeholders. It fails,
// naming the variable, when one has no equivalent, and when s holds a
// literal brace that gatehouse would read as a placeholder.
func expand(s, serverName string) (string, error) {
	s = strings.ReplaceAll(s, "$uri$is_args$args", "$request_uri")
	s = strings.ReplaceAll(s, "${uri}${is_args}${args}", "$request_uri")
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '{' || c == '}' {
			return "", fmt.Errorf("%q holds a literal brace, which gatehouse reads as a placeholder", s)
		}
		if c != '$' {
			sb.WriteByte(c)
			continue
		}
		name, n := varName(s[i+1:])
		if name == "" {
			sb.WriteByte(c)
			continue
		}
		i += n
		switch {
		case placeholders[name] != "":
			sb.WriteString(placeholders[name])
		case name == "server_name" && serverName != "":
			sb.WriteString(serverName)
		case strings.HasPrefix(name, "http_") && len(name) > 5:
			sb.WriteString("{header." + http.CanonicalHeaderKey(strings.ReplaceAll(name[5:], "_", "-")) + "}")
		default:
			return "", fmt.Errorf("variable $%s has no gatehouse equivalent", name)
		}
	}
	return sb.String(), nil
}

// varName reads a variable name after '$': name or {name}. n is how many
// bytes it took.
func varName(s string) (name string, n int) {
	if strings.HasPrefix(s, "{") {
		end := strings.IndexByte(s, '}')
		if end < 0 {
			return "", 0
		}
		return s[1:end], end + 1
	}
	for n < len(s) && (s[n] == '_' || s[n] >= 'a' && s[n] <= 'z' || s[n] >= 'A' && s[n] <= 'Z' || s[n] >= '0' && s[n] <= '9') {
		n++
	}
	return s[:n], n
}

// hasVar reports whether s uses an nginx variable.
func hasVar(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '$' {
			if name, _ := varName(s[i+1:]); name != "" {
				return true
			}
		}
	}
	return false
}

// nginxSize converts 10m, 512k, 1g or 100 to gatehouse's 10MB, 512KB, 1GB
// or 100.
func nginxSize(s string) (string, int64, error) {
	l := strings.ToLower(s)
	unit, mult := "", int64(1)
	switch {
	case strings.HasSuffix(l, "k"):
		unit, mult = "KB", 1<<10
	case strings.HasSuffix(l, "m"):
		unit, mult = "MB", 1<<20
	case strings.HasSuffix(l, "g"):
		unit, mult = "GB", 1<<30
	}
	digits := strings.TrimRight(l, "kmg")
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 0 || len(l)-len(digits) > 1 {
		return "", 0, fmt.Errorf("%q is not an nginx size", s)
	}
	return digits + unit, n * mult, nil
}

var timeUnits = []struct {
	suffix string
	d      time.Duration
}{
	{"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour},
	{"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour},
}

// nginxTime reads an nginx time such as 60, 60s, 1m30s or 500ms (a number
// alone is seconds).
func nginxTime(s string) (time.Duration, error) {
	rest := strings.ReplaceAll(s, " ", "")
	if rest == "" {
		return 0, fmt.Errorf("empty time")
	}
	var total time.Duration
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i > 9 {
			return 0, fmt.Errorf("%q is not an nginx time", s)
		}
		n, _ := strconv.Atoi(rest[:i])
		rest = rest[i:]
		unit := time.Second
		matched := rest == ""
		for _, u := range timeUnits {
			if strings.HasPrefix(rest, u.suffix) {
				unit, rest, matched = u.d, rest[len(u.suffix):], true
				break
			}
		}
		if !matched {
			return 0, fmt.Errorf("%q is not an nginx time", s)
		}
		total += time.Duration(n) * unit
	}
	return total, nil
}

// goDuration writes d the way a person would: 90s, 5m, 1h, 500ms.
func goDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

// listenAddr turns an nginx listen address into gatehouse's host:port.
// Every-address forms (80, *:80, [::]:80, 0.0.0.0:80) become ":80", which
// gatehouse binds on IPv4 and IPv6 alike.
func listenAddr(a string) (string, error) {
	if strings.HasPrefix(a, "unix:") {
		return "", fmt.Errorf("unix sockets are not supported")
	}
	if _, err := strconv.Atoi(a); err == nil {
		return ":" + a, nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		// An address alone means port 80.
		host, port = strings.Trim(a, "[]"), "80"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q is out of range", port)
	}
	switch host {
	case "*", "", "0.0.0.0", "::":
		return ":" + port, nil
	case "localhost":
		return net.JoinHostPort(host, port), nil
	}
	if ip := net.ParseIP(host); ip == nil {
		return "", fmt.Errorf("host %q is not an IP address: gatehouse listens on addresses", host)
	}
	return net.JoinHostPort(host, port), nil
}
