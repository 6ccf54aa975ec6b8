//go:build !linux

package nft

import (
	"errors"
	"net/netip"

	"gatehouse/internal/firewall"
)

// TableName is the nftables table gatehouse owns, in the inet family.
const TableName = "gatehouse"

// ErrUnsupported is returned off Linux, which alone has nftables.
var ErrUnsupported = errors.New("nftables: only on Linux")

// Table is the kernel backend; off Linux it cannot be opened.
type Table struct{}

// Options says where the table lives.
type Options struct{ NetNS int }

// Open fails off Linux.
func Open(Options) (*Table, error) { return nil, ErrUnsupported }

func (*Table) Apply(*firewall.Policy, []firewall.Ban) error { return ErrUnsupported }
func (*Table) Ban(firewall.Ban) error                       { return ErrUnsupported }
func (*Table) Unban(netip.Prefix) error                     { return ErrUnsupported }
func (*Table) Remove() error                                { return ErrUnsupported }
func (*Table) Installed() (bool, error)                     { return false, ErrUnsupported }
