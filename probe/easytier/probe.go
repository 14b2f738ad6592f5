package easytier

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Options configure a probe. The zero value probes with EasyTier's defaults:
// network "default", no secret, 4 pings 200 ms apart with 2 s each.
type Options struct {
	NetworkName   string
	NetworkSecret string
	Samples       int           // pings to send; default 4
	Interval      time.Duration // spacing between pings; default 200ms
	PingTimeout   time.Duration // per ping; default 2s (EasyTier's)
	// RouteWait bounds how long after acceptance we wait for the node's
	// route push with its own info. Zero means 3.5s: a node's first push
	// sometimes goes astray and its retry comes after its 3 s RPC timeout
	// (measured: ~1 % of tcp and ~5 % of ws probes get it at 3.05 s).
	// Negative skips the route sync.
	RouteWait time.Duration
	// ForeignWait bounds how long after the node's own info we wait for a
	// separate push carrying its foreign-network table. A node sends the
	// table in the same push as its own info when it has one, and nothing
	// when it has none, so this wait is what every probe of a node without
	// foreign networks costs. Zero means 500ms; negative does not wait
	// (the count is then reported as unknown).
	ForeignWait time.Duration
	// HandshakeTimeout bounds the wait for the node's handshake reply;
	// default 5s (EasyTier's).
	HandshakeTimeout time.Duration
	// TLS, when non-nil, is used for wss and verifies the node's certificate.
	// By default, like EasyTier, wss does not verify (nodes use a self-signed
	// certificate for "localhost").
	TLS *tls.Config
	// Resolver resolves names; nil uses net.DefaultResolver.
	Resolver *net.Resolver
	// Allow, when set, vets every resolved address before dialling.
	Allow func(netip.Addr) error
	// OnSend, when set, sees every EasyTier packet before it is written
	// (tests use it to check the emitted set).
	OnSend func(packet []byte)
	// OnRecv, when set, sees every packet read from the node.
	OnRecv func(packet []byte)
}

func (o Options) withDefaults() Options {
	if o.NetworkName == "" {
		o.NetworkName = "default"
	}
	if o.Samples <= 0 {
		o.Samples = 4
	}
	if o.Interval <= 0 {
		o.Interval = 200 * time.Millisecond
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = 2 * time.Second
	}
	if o.RouteWait == 0 {
		o.RouteWait = 3500 * time.Millisecond
	}
	if o.ForeignWait == 0 {
		o.ForeignWait = 500 * time.Millisecond
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 5 * time.Second
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	return o
}

// DefaultPort is the port EasyTier listens on for each transport.
func DefaultPort(scheme string) int {
	switch scheme {
	case "tcp", "udp":
		return 11010
	case "ws":
		return 11011
	case "wss":
		return 11012
	}
	return 0
}

// Target is a parsed probe URL.
type Target struct {
	Scheme string
	Host   string // without brackets
	Port   int
	Path   string // ws/wss request path, "/" by default
}

// ParseTarget parses scheme://host[:port][/path]. Schemes EasyTier has but
// this prober does not speak (quic, wg, faketcp) give ErrUnsupportedProtocol.
func ParseTarget(raw string) (Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Target{}, fmt.Errorf("parsing %q: %w", raw, ErrBadTarget)
	}
	t := Target{Scheme: strings.ToLower(u.Scheme), Host: u.Hostname(), Path: u.EscapedPath()}
	switch t.Scheme {
	case "tcp", "udp", "ws", "wss":
	default: // quic, wg, faketcp, discovery schemes, anything else
		return t, fmt.Errorf("scheme %q: %w", t.Scheme, ErrUnsupportedProtocol)
	}
	if t.Host == "" {
		return t, fmt.Errorf("no host in %q: %w", raw, ErrBadTarget)
	}
	t.Port = DefaultPort(t.Scheme)
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return t, fmt.Errorf("port %q: %w", p, ErrBadTarget)
		}
		t.Port = n
	}
	if t.Path == "" {
		t.Path = "/"
	}
	return t, nil
}

// Probe makes one attempt on the node at rawURL and returns what it saw.
// It never outlives ctx: give ctx a deadline. A nil error means the node
// accepted us and answered at least one ping.
func Probe(ctx context.Context, rawURL string, opts Options) (Observation, error) {
	var obs Observation
	err := ProbeInto(ctx, rawURL, &opts, &obs)
	return obs, err
}

// ProbeInto is Probe writing what it saw into obs, which it overwrites;
// it does not change opts. Callers with many probes in flight use it: no
// Observation or Options is copied through the frames of a probe's
// goroutine, whose stack then stays within 8 KiB (the Go runtime grows a
// stack by copying it whole, and the dial is deep).
func ProbeInto(ctx context.Context, rawURL string, opts *Options, obs *Observation) error {
	t, err := ParseTarget(rawURL)
	if err != nil {
		*obs = Observation{Transport: t.Scheme, Stage: StageDNS, Reason: ReasonUnsupportedProtocol}
		return err
	}
	return probeTarget(ctx, &t, opts, obs)
}

// probeTarget is ProbeInto for an already parsed target.
func probeTarget(ctx context.Context, t *Target, o *Options, obs *Observation) error {
	*obs = Observation{Transport: t.Scheme, Stage: StageDNS}
	opts := o.withDefaults()
	start := time.Now()
	addrs, err := resolve(ctx, &opts, t.Host)
	obs.Timings.DNS = time.Since(start)
	if err != nil {
		if errors.Is(err, ErrTargetDenied) {
			obs.Reason = ReasonTargetDenied
		}
		return err
	}
	// Before the dial: the kernel takes a moment to switch stamping on.
	defer holdRxStamping()()
	var pc packetConn
	switch t.Scheme {
	case "tcp":
		pc, err = dialTCP(ctx, addrs, t.Port, obs)
	case "udp":
		pc, err = dialUDP(ctx, addrs, t.Port, obs)
	case "ws", "wss":
		pc, err = dialWS(ctx, *t, addrs, &opts, obs)
	default:
		obs.Reason = ReasonUnsupportedProtocol
		return fmt.Errorf("scheme %q: %w", t.Scheme, ErrUnsupportedProtocol)
	}
	if err != nil {
		return err
	}
	s := newSession(pc, &opts, obs)
	err = s.run(ctx)
	s.close()
	if err == nil {
		obs.Stage, obs.Reason = StageClose, ReasonOK
	}
	return err
}

// resolve returns the target's addresses, IPv4 first, each vetted by Allow.
func resolve(ctx context.Context, opts *Options, host string) ([]netip.Addr, error) {
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a.Unmap()}
	} else {
		ips, err := opts.Resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", host, err)
		}
		for _, a := range ips {
			if a.Unmap().Is4() {
				addrs = append(addrs, a.Unmap())
			}
		}
		for _, a := range ips {
			if !a.Unmap().Is4() {
				addrs = append(addrs, a)
			}
		}
	}
	if opts.Allow != nil {
		var ok []netip.Addr
		var firstErr error
		for _, a := range addrs {
			if err := opts.Allow(a); err != nil {
				firstErr = err
				continue
			}
			ok = append(ok, a)
		}
		if len(ok) == 0 {
			if firstErr == nil {
				firstErr = fmt.Errorf("no address for %s", host)
			}
			return nil, fmt.Errorf("vetting %s: %w: %w", host, ErrTargetDenied, firstErr)
		}
		addrs = ok
	}
	if len(addrs) == 0 {
		return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
	}
	return addrs, nil
}
