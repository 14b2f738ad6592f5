// Package easytier probes one EasyTier node with EasyTier's own protocol:
// the legacy handshake, Ping/Pong round trips measured the way EasyTier
// measures them, and one minimal route sync to learn the node's version,
// hostname and foreign-network count. One file per transport (tcp, udp, ws);
// the transport-independent exchange lives in session.go.
package easytier

import (
	"encoding/json"
	"errors"
	"math"
	"time"
)

// Errors that say what the node did. Transport errors (refused, timeouts,
// DNS) are passed through wrapped so callers can classify them.
var (
	ErrWrongSecret         = errors.New("node rejected the network secret")
	ErrRejected            = errors.New("node closed the connection after the handshake")
	ErrNoPong              = errors.New("no ping or pong from the node")
	ErrSecureModeRequired  = errors.New("node requires secure mode for its own network")
	ErrUnsupportedProtocol = errors.New("unsupported protocol")
	ErrHandshakeTimeout    = errors.New("no handshake reply")
	ErrClosedBeforeReply   = errors.New("connection closed before the handshake reply")
	ErrUpgrade             = errors.New("websocket upgrade refused")
	ErrTextMessage         = errors.New("text websocket message")
	ErrSackTimeout         = errors.New("no udp sack")
	ErrPeerIDConflict      = errors.New("node chose our peer id")
	ErrBadTarget           = errors.New("bad target url")
	ErrTargetDenied        = errors.New("target address denied by policy")
	ErrUnexpectedPacket    = errors.New("unexpected packet before the handshake reply")
	ErrUnsafeSend          = errors.New("refusing to send a packet outside the allowed set")
)

// Reasons are the fine-grained causes reported next to a class.
const (
	ReasonOK                   = "ok"
	ReasonWrongSecret          = "wrong_secret"
	ReasonRejected             = "rejected"
	ReasonNoPong               = "no_pong"
	ReasonSecureModeRequired   = "secure_mode_required"
	ReasonUnsupportedProtocol  = "unsupported_protocol"
	ReasonHandshakeTimeout     = "handshake_timeout"
	ReasonClosedBeforeReply    = "closed_before_reply"
	ReasonUpgrade              = "ws_upgrade"
	ReasonBadFrame             = "bad_frame"
	ReasonTargetDenied         = "target_denied"
	ReasonNoRouteInfo          = "no_route_info"
	ReasonDecryptFailed        = "decrypt_failed"
	ReasonRouteRPCError        = "route_rpc_error"
	ReasonRouteSelfMissing     = "route_self_missing"
	ReasonCompressedRouteInfo  = "route_info_compressed"
	ReasonPeerIDConflict       = "peer_id_conflict"
	ReasonUnexpectedFirstReply = "unexpected_packet"
)

// Stages of one probe, in order.
const (
	StageDNS       = "dns"
	StageConnect   = "connect"
	StageTLS       = "tls"
	StageUpgrade   = "upgrade"
	StageHandshake = "handshake"
	StagePing      = "ping"
	StageRoute     = "route"
	StageClose     = "close"
)

// Timings are the durations of each stage that ran.
type Timings struct {
	DNS       time.Duration
	Connect   time.Duration // TCP connect, or UDP SYN→SACK
	TLS       time.Duration
	Upgrade   time.Duration
	Handshake time.Duration
}

// TimingsUS are the Timings in whole microseconds, as JSON writes them.
type TimingsUS struct {
	ConnectUS   int64 `json:"connect_us"`
	DNSUS       int64 `json:"dns_us"`
	HandshakeUS int64 `json:"handshake_us"`
	TLSUS       int64 `json:"tls_us"`
	UpgradeUS   int64 `json:"upgrade_us"`
}

// US gives the stages in whole microseconds.
func (t Timings) US() TimingsUS {
	return TimingsUS{ConnectUS: t.Connect.Microseconds(), DNSUS: t.DNS.Microseconds(), HandshakeUS: t.Handshake.Microseconds(),
		TLSUS: t.TLS.Microseconds(), UpgradeUS: t.Upgrade.Microseconds()}
}

// MarshalJSON writes every stage in whole microseconds (TimingsUS). A
// report of many peers should hold TimingsUS itself: encoding/json checks
// and copies what a MarshalJSON returns.
func (t Timings) MarshalJSON() ([]byte, error) { return json.Marshal(t.US()) }

// NodeInfo is what the node's route push told us about itself.
type NodeInfo struct {
	Version        string `json:"version"`      // "2.6.4"
	FullVersion    string `json:"full_version"` // "2.6.4-8428a89d"
	Hostname       string `json:"hostname"`
	IsPublicServer bool   `json:"is_public_server"`
	// ForeignKnown is false when the node's foreign-network table did not
	// arrive (foreign mode, or ForeignWait elapsed); the counts are then 0.
	ForeignKnown     bool   `json:"foreign_known"`
	ForeignNetworks  int    `json:"foreign_networks"`
	ForeignWithPeers int    `json:"foreign_networks_with_peers"`
	Cipher           string `json:"cipher,omitempty"` // cipher that opened the push, if sealed
}

// Observation is the result of one probe.
type Observation struct {
	Transport   string  `json:"transport"`
	Address     string  `json:"address,omitempty"` // the IP:port dialled
	Stage       string  `json:"stage"`             // the stage that failed, or "close"
	Reason      string  `json:"reason"`
	Timings     Timings `json:"timings"`
	PeerID      uint32  `json:"prober_peer_id,omitempty"` // the id we used
	NodePeerID  uint32  `json:"node_peer_id,omitempty"`
	NodeNetwork string  `json:"node_network,omitempty"`
	// Mode is "same" when we joined the node's own network, "foreign" when
	// the node relays us as a foreign network.
	Mode     string `json:"mode,omitempty"`
	Accepted bool   `json:"accepted"`
	// HandshakeResent counts the times a udp probe started over on a new
	// session because the handshake reply had not come (session.go).
	HandshakeResent int `json:"handshake_resent,omitempty"`

	SamplesUS []int64 `json:"samples_us"` // successful ping RTTs, in order
	Sent      int     `json:"pings_sent"`
	Lost      int     `json:"pings_lost"`

	Node       *NodeInfo `json:"node,omitempty"`
	NodeMissed string    `json:"node_missing,omitempty"` // why Node is nil
}

// LatencyUS is EasyTier's figure, the integer mean of the last ≤15
// successful samples, but for the first sample when others came back; 0
// when there are none.
//
// The first ping leaves as the handshake reply arrives, when the node is
// still setting up our connection (its route push, its own first ping), so
// its pong measures a node in a state the following ones do not: against a
// real node it came back ~0.15 ms sooner than the rest on loopback, and
// 0.3–1.7 ms later in about a third of the probes through a 50 ms or
// 200 ms link. A node's own window of a long-lived connection dilutes that
// one sample; a probe's handful would not.
func (o *Observation) LatencyUS() int64 {
	s := o.SamplesUS
	if len(s) > 1 {
		s = s[1:]
	}
	if len(s) > 15 {
		s = s[len(s)-15:]
	}
	if len(s) == 0 {
		return 0
	}
	var sum int64
	for _, v := range s {
		sum += v
	}
	return sum / int64(len(s))
}

// Stats summarises the samples: min, max, population standard deviation
// (all in µs) and the fraction of pings lost.
func (o *Observation) Stats() (minUS, maxUS int64, stddevUS, loss float64) {
	if o.Sent > 0 {
		loss = float64(o.Lost) / float64(o.Sent)
	}
	if len(o.SamplesUS) == 0 {
		return 0, 0, 0, loss
	}
	minUS, maxUS = o.SamplesUS[0], o.SamplesUS[0]
	var sum float64
	for _, v := range o.SamplesUS {
		minUS, maxUS = min(minUS, v), max(maxUS, v)
		sum += float64(v)
	}
	mean := sum / float64(len(o.SamplesUS))
	var sq float64
	for _, v := range o.SamplesUS {
		sq += (float64(v) - mean) * (float64(v) - mean)
	}
	return minUS, maxUS, math.Sqrt(sq / float64(len(o.SamplesUS))), loss
}
