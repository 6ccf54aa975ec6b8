package proxy

import "net/http"

// ThirdParty is what a route keeps from an upstream it does not own, such
// as a public API reached over https:// with a key of ours: the client's
// credentials for this site are not the third party's business, and the
// third party has no business setting cookies on this site.
type ThirdParty struct {
	// StripCredentials removes the client's Cookie and Authorization from
	// the upstream request. Headers set by the route (an API key) are
	// applied afterwards, so they still go.
	StripCredentials bool
	// DropSetCookie removes Set-Cookie from the upstream's responses.
	DropSetCookie bool
}

// thirdPartyRequest strips the client's credentials from out before the
// route's own header edits run.
func (h *Handler) thirdPartyRequest(out *http.Request) {
	if h.opts.ThirdParty.StripCredentials {
		delete(out.Header, "Cookie")
		delete(out.Header, "Authorization")
	}
}

// thirdPartyDescribe adds what the third-party policy does to the journey's
// description of the upstream request.
func thirdPartyDescribe(o Options) string {
	if o.ThirdParty.StripCredentials {
		return ", the client's Cookie and Authorization removed"
	}
	return ""
}

// modifyThirdParty drops Set-Cookie, then applies the response edits.
func (h *Handler) modifyThirdParty(resp *http.Response) error {
	delete(resp.Header, "Set-Cookie")
	return h.modifyResponse(resp)
}
