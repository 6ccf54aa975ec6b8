package instance

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gatehouse/internal/atomicfile"
	"gatehouse/internal/firewall"
	"gatehouse/internal/firewall/nft"
	"gatehouse/internal/journey"
)

// reportHandshakeFailure counts a failed TLS handshake, which net/http
// reports only as a log line ("http: TLS handshake error from ADDR: …"),
// towards the source's ban.
func (in *Instance) reportHandshakeFailure(line []byte) {
	rest, ok := bytes.CutPrefix(line, []byte("http: TLS handshake error from "))
	if !ok {
		return
	}
	addr, _, _ := strings.Cut(string(rest), ": ")
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		in.guard.Report(ap.Addr().Unmap(), firewall.ViolationTLSHandshake)
	}
}

// observe is told of every finished request: metrics, and 4xx answers
// towards floods.
func (in *Instance) observe(rec *journey.Record) {
	in.metrics.ObserveRequest(rec)
	switch {
	case rec.Status < 400 || rec.Status >= 500:
	case rec.Status == 429 || rec.Status == 403 && rec.Handler == "":
		// The firewall's own answers are counted by the firewall.
	case rec.Status == 401 || rec.Status == 407:
		// Asking for credentials is not abuse.
	default:
		src := rec.Peer.Addr()
		if rec.Client.IsValid() {
			src = rec.Client // behind a trusted proxy, the client, not the proxy
		}
		in.guard.Report(src, firewall.ViolationHTTPError)
	}
}

// dnsAllowFor is the firewall's say on DNS packets arriving on port.
func (in *Instance) dnsAllowFor(port func() uint16) func(netip.AddrPort, string) bool {
	return func(src netip.AddrPort, network string) bool {
		return in.guard.AllowPacket(network, port(), src)
	}
}

// applyNftables makes the kernel's `inet gatehouse` table match the policy
// when the config asks for it, and removes it when it no longer does. It
// runs before anything else of a reload changes: a table that cannot be
// installed (no CAP_NET_ADMIN) refuses the config.
func (in *Instance) applyNftables(p *firewall.Policy) error {
	t := in.nft.Load()
	if !p.Nftables().Enabled {
		if t != nil {
			in.nft.Store(nil)
			return t.Remove()
		}
		return nil
	}
	if t == nil {
		var err error
		if t, err = nft.Open(nft.Options{}); err != nil {
			return fmt.Errorf("firewall nftables: %w (it needs Linux and CAP_NET_ADMIN; set nftables: off to use the listener backend alone)", err)
		}
	}
	if err := t.Apply(p, in.guard.Bans()); err != nil {
		return fmt.Errorf("firewall nftables: %w", err)
	}
	in.nft.Store(t)
	return nil
}

// banInKernel adds a new ban to the nftables table, when there is one.
func (in *Instance) banInKernel(b firewall.Ban) {
	if t := in.nft.Load(); t != nil {
		if err := t.Ban(b); err != nil {
			in.log.Warn("firewall: ban not added to nftables", "error", err.Error())
		}
	}
}

func (in *Instance) removeNftables() {
	if t := in.nft.Swap(nil); t != nil {
		if err := t.Remove(); err != nil {
			in.log.Warn("firewall: nftables table not removed", "error", err.Error())
		}
	}
}

// bansFile is where bans outlive the process: a source banned for an hour
// is still banned when gatehouse restarts a minute later.
func (in *Instance) bansFile() string {
	return filepath.Join(in.opts.DataDir, "firewall", "bans.json")
}

// restoreBans puts back the bans kept by the last process.
func (in *Instance) restoreBans() {
	path := in.bansFile()
	in.readKept(path, "firewall: bans file", func(data []byte) error {
		bans, err := firewall.DecodeBans(data)
		if err == nil {
			if n := in.guard.Restore(bans); n > 0 {
				in.log.Info("firewall: bans restored", "count", n, "file", path)
			}
		}
		return err
	})
}

// readKept gives load the state an earlier process kept in path, if any.
// A file that cannot be read or loaded is moved aside, kept for a look
// where the next write cannot replace it, and the instance starts without
// it.
func (in *Instance) readKept(path, what string, load func([]byte) error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err == nil {
		err = load(data)
	}
	if err == nil {
		return
	}
	aside := path + ".unreadable"
	if rerr := os.Rename(path, aside); rerr != nil {
		in.log.Warn(what+" not read, nor moved aside; gatehouse starts without it and its next write replaces the file", "file", path, "error", err.Error(), "move_error", rerr.Error())
		return
	}
	in.log.Warn(what+" not read; gatehouse starts without it", "file", path, "kept_as", aside, "error", err.Error())
}

// onBan is the guard's hook for every new ban.
func (in *Instance) onBan(b firewall.Ban) {
	in.banInKernel(b)
	in.bansChanged()
}

// bansChanged writes the bans file within a second: a burst of bans is one
// write, and a ban is kept even if the process dies soon after.
func (in *Instance) bansChanged() {
	if !in.bansDirty.Swap(true) {
		time.AfterFunc(time.Second, in.saveBans)
	}
}

// saveBans writes the bans in force to the bans file, if they changed
// since the last write.
func (in *Instance) saveBans() {
	in.bansMu.Lock()
	defer in.bansMu.Unlock()
	if !in.bansDirty.Swap(false) {
		return
	}
	path := in.bansFile()
	data, err := firewall.EncodeBans(in.guard.Bans())
	if err == nil {
		err = os.MkdirAll(filepath.Dir(path), 0o700)
	}
	if err == nil {
		err = atomicfile.Write(path, data, 0o600)
	}
	if err != nil {
		in.log.Warn("firewall: bans not kept on disk; they hold until gatehouse stops", "file", path, "error", err.Error())
	}
}

// Unban lifts the ban on the source holding a, in gatehouse and in the
// kernel's table. It returns what the ban covered (a itself, or its /64),
// or "" when a was not banned.
func (in *Instance) Unban(a netip.Addr) (string, error) {
	src, ok := in.guard.Unban(a)
	if !ok {
		return "", nil
	}
	lifted := firewall.PrefixString(src)
	in.log.Info("firewall: ban lifted", "source", lifted)
	in.bansChanged()
	if t := in.nft.Load(); t != nil {
		if err := t.Unban(src); err != nil {
			return lifted, err
		}
	}
	return lifted, nil
}
