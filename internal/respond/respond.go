// Package respond owns the routes answered by gatehouse itself: fixed
// responses (respond) and redirects (redirect).
package respond

import (
	"net/http"
	"strconv"

	"gatehouse/internal/placeholder"
)

// Fixed answers every request with the same status and body.
type Fixed struct {
	status int
	body   []byte
	header http.Header
}

// NewFixed returns a handler answering status with body.
func NewFixed(status int, body, contentType string) *Fixed {
	return &Fixed{
		status: status,
		body:   []byte(body),
		header: http.Header{
			"Content-Type":   {contentType},
			"Content-Length": {strconv.Itoa(len(body))},
		},
	}
}

func (f *Fixed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	for k, v := range f.header {
		h[k] = v
	}
	w.WriteHeader(f.status)
	if r.Method != http.MethodHead {
		w.Write(f.body)
	}
}

// Redirect answers with a redirect to a compiled target.
type Redirect struct {
	to     *placeholder.Template
	status int
}

// NewRedirect returns a handler redirecting to target with status.
func NewRedirect(target string, status int) (*Redirect, error) {
	t, err := placeholder.Compile(target)
	if err != nil {
		return nil, err
	}
	return &Redirect{to: t, status: status}, nil
}

func (rd *Redirect) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header()["Location"] = []string{rd.to.Fill(r)}
	w.WriteHeader(rd.status)
}
