package certs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/libdns/libdns"
	"github.com/mholt/acmez/v3/acme"
)

// TXTPublisher publishes TXT records in the zones gatehouse serves
// authoritatively; instance satisfies it with the DNS server. Name is a
// fully qualified name (a trailing dot is optional); remove takes the
// record away again and is safe to call more than once.
type TXTPublisher interface {
	PublishTXT(name, value string) (remove func(), err error)
}

// TXTProvider is a libdns provider over gatehouse's own DNS: it appends and
// deletes TXT records (the only type ACME needs) through a TXTPublisher, so
// DNS-01 and therefore wildcard certificates work without a DNS provider
// account.
type TXTProvider struct {
	Publisher TXTPublisher

	mu      sync.Mutex
	removes map[txtKey][]func()
}

type txtKey struct{ name, value string }

// AppendRecords publishes each TXT record in zone.
func (p *TXTProvider) AppendRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	if p.Publisher == nil {
		return nil, errors.New("no DNS server to publish the dns-01 record: set dns.listen and serve the zone")
	}
	var added []libdns.Record
	for _, rec := range recs {
		rr := rec.RR()
		if rr.Type != "TXT" {
			return added, fmt.Errorf("publishing %s record %s: only TXT records are supported", rr.Type, rr.Name)
		}
		fqdn := strings.TrimSuffix(libdns.AbsoluteName(rr.Name, zone), ".")
		remove, err := p.Publisher.PublishTXT(fqdn, rr.Data)
		if err != nil {
			return added, fmt.Errorf("publishing TXT %s: %w", fqdn, err)
		}
		p.mu.Lock()
		if p.removes == nil {
			p.removes = map[txtKey][]func(){}
		}
		k := txtKey{fqdn, rr.Data}
		p.removes[k] = append(p.removes[k], remove)
		p.mu.Unlock()
		added = append(added, rec)
	}
	return added, nil
}

// DeleteRecords withdraws TXT records published by AppendRecords; records
// it did not publish are ignored, as libdns asks.
func (p *TXTProvider) DeleteRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	var deleted []libdns.Record
	for _, rec := range recs {
		rr := rec.RR()
		k := txtKey{strings.TrimSuffix(libdns.AbsoluteName(rr.Name, zone), "."), rr.Data}
		p.mu.Lock()
		fns := p.removes[k]
		delete(p.removes, k)
		p.mu.Unlock()
		for _, fn := range fns {
			fn()
		}
		if len(fns) > 0 {
			deleted = append(deleted, rec)
		}
	}
	return deleted, nil
}

// dns01Solver answers ACME dns-01 challenges through a libdns provider
// over zones gatehouse serves. certmagic's DNS01Solver would first look
// the zone up over DNS and then poll resolvers for propagation; both are
// needless here, since gatehouse is the authoritative server and knows its
// zones, and the record is served the moment it is published.
type dns01Solver struct {
	provider interface {
		libdns.RecordAppender
		libdns.RecordDeleter
	}
	zoneFor func(name string) string
	ttl     time.Duration
}

func (s *dns01Solver) record(ch acme.Challenge) (zone string, rec libdns.TXT, err error) {
	name := ch.DNS01TXTRecordName()
	zone = s.zoneFor(name)
	if zone == "" {
		return "", rec, fmt.Errorf("%s is not inside a zone gatehouse serves, so gatehouse cannot answer its dns-01 challenge: add the zone to dns.zones", ch.Identifier.Value)
	}
	return zone, libdns.TXT{Name: libdns.RelativeName(name+".", zone+"."), Text: ch.DNS01KeyAuthorization(), TTL: s.ttl}, nil
}

func (s *dns01Solver) Present(ctx context.Context, ch acme.Challenge) error {
	zone, rec, err := s.record(ch)
	if err != nil {
		return err
	}
	_, err = s.provider.AppendRecords(ctx, zone+".", []libdns.Record{rec})
	return err
}

func (s *dns01Solver) CleanUp(ctx context.Context, ch acme.Challenge) error {
	zone, rec, err := s.record(ch)
	if err != nil {
		return nil // nothing was published
	}
	_, err = s.provider.DeleteRecords(ctx, zone+".", []libdns.Record{rec})
	return err
}

var (
	_ libdns.RecordAppender = (*TXTProvider)(nil)
	_ libdns.RecordDeleter  = (*TXTProvider)(nil)
)
