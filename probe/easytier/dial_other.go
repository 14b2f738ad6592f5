//go:build !linux

package easytier

import (
	"context"
	"errors"
	"net"
	"net/netip"
)

var errNoDirect = errors.New("not for a direct dial")

// dialDirect is Linux's (dial_linux.go); elsewhere tcp dials with net.Dialer.
func dialDirect(context.Context, netip.AddrPort) (net.Conn, error) { return nil, errNoDirect }
