// Package report is the NeoUptime backend client: it fetches the peers to
// monitor (GET /peers) and reports each peer's status (PUT /nodes/status),
// and owns every JSON shape of that contract.
package report

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Peer is one node the backend asks us to monitor.
type Peer struct {
	ID            int64  `json:"id"`
	Name          string `json:"name,omitempty"`
	Host          string `json:"host"`
	Port          int    `json:"port"`
	Protocol      string `json:"protocol"`
	NetworkName   string `json:"network_name"`
	NetworkSecret string `json:"-"` // never serialised by us
	PublicIP      string `json:"public_ip,omitempty"`
	// Unsupported is set for protocols the prober cannot speak; such peers
	// are listed, never probed as another protocol, and never reported.
	Unsupported bool `json:"unsupported,omitempty"`
}

// defaultPorts are EasyTier's listener ports per protocol.
var defaultPorts = map[string]int{"tcp": 11010, "udp": 11010, "ws": 11011, "wss": 11012}

// maxNameLen bounds names kept for logs.
const maxNameLen = 128

// URL formats the peer as the prober's target URL.
func (p Peer) URL() string {
	return p.Protocol + "://" + net.JoinHostPort(p.Host, strconv.Itoa(p.Port))
}

// wirePeer is the JSON of one peer as backends send it; fields are raw so
// one bad value rejects only its peer.
type wirePeer struct {
	ID            json.RawMessage `json:"id"`
	Name          json.RawMessage `json:"name"`
	Host          json.RawMessage `json:"host"`
	Port          json.RawMessage `json:"port"`
	Protocol      json.RawMessage `json:"protocol"`
	NetworkName   json.RawMessage `json:"network_name"`
	NetworkSecret json.RawMessage `json:"network_secret"`
	PublicIP      json.RawMessage `json:"public_ip"`
}

// parsePeers decodes the data of GET /peers. It keeps every valid peer,
// skipping malformed ones and duplicate ids with a warning each.
func parsePeers(data json.RawMessage) ([]Peer, []string, error) {
	if len(data) == 0 || string(data) == "null" {
		return nil, nil, nil
	}
	// The list in one pass where it has the usual shape (fastPeers),
	// else in one decode (a peer list is on the path to the first probe:
	// 1,000 entries decoded one by one took ~5 ms of CPU). When that
	// fails, an entry is not an object or the list not an array:
	// parsePeersEach finds which and words the warning.
	if ws, ok := fastPeers(data); ok {
		peers, warns := keepPeers(len(ws), func(i int) (Peer, error) { return checkPeer(ws[i]) })
		return peers, warns, nil
	}
	return parsePeersJSON(data)
}

// parsePeersJSON is parsePeers through encoding/json.
func parsePeersJSON(data json.RawMessage) ([]Peer, []string, error) {
	var d struct {
		Peers []wirePeer `json:"peers"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return parsePeersEach(data)
	}
	peers, warns := keepPeers(len(d.Peers), func(i int) (Peer, error) { return checkPeer(d.Peers[i]) })
	return peers, warns, nil
}

// parsePeersEach decodes the list entry by entry, so that one entry that
// is not an object rejects only itself.
func parsePeersEach(data json.RawMessage) ([]Peer, []string, error) {
	var d struct {
		Peers []json.RawMessage `json:"peers"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, nil, fmt.Errorf("decoding peer list: %w", err)
	}
	peers, warns := keepPeers(len(d.Peers), func(i int) (Peer, error) { return parsePeer(d.Peers[i]) })
	return peers, warns, nil
}

// keepPeers keeps the n entries that parse, skipping bad ones and
// duplicate ids with a warning each.
func keepPeers(n int, parse func(i int) (Peer, error)) ([]Peer, []string) {
	var (
		peers = make([]Peer, 0, n)
		warns []string
		seen  = make(map[int64]bool, n)
	)
	for i := range n {
		p, err := parse(i)
		if err != nil {
			warns = append(warns, fmt.Sprintf("skipping peer #%d: %v", i, err))
			continue
		}
		if seen[p.ID] {
			warns = append(warns, fmt.Sprintf("skipping peer #%d: duplicate id %d (the first wins)", i, p.ID))
			continue
		}
		seen[p.ID] = true
		peers = append(peers, p)
	}
	if len(peers) == 0 {
		peers = nil
	}
	return peers, warns
}

// plainString is the value of a JSON string without escapes, as
// encoding/json would decode it; ok is false for anything else.
func plainString(raw json.RawMessage) (s string, ok bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	body := raw[1 : len(raw)-1]
	for _, c := range body {
		if c == '\\' || c == '"' || c < 0x20 {
			return "", false
		}
	}
	if !utf8.Valid(body) { // encoding/json would replace bad bytes
		return "", false
	}
	return string(body), true
}

// plainUint is the value of a JSON number of at most maxDigits decimal
// digits and nothing else; ok is false for anything else.
func plainUint(raw json.RawMessage, maxDigits int) (n int64, ok bool) {
	if len(raw) == 0 || len(raw) > maxDigits {
		return 0, false
	}
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func optString(raw json.RawMessage, field string) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if s, ok := plainString(raw); ok {
		return s, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s is not a string", field)
	}
	return s, nil
}

func parsePeer(raw json.RawMessage) (Peer, error) {
	var w wirePeer
	if err := json.Unmarshal(raw, &w); err != nil {
		return Peer{}, fmt.Errorf("not an object")
	}
	return checkPeer(w)
}

// checkPeer validates one decoded entry and applies the defaults.
func checkPeer(w wirePeer) (Peer, error) {
	var p Peer
	if id, ok := plainUint(w.ID, 18); ok {
		p.ID = id
	} else if err := json.Unmarshal(w.ID, &p.ID); err != nil || len(w.ID) == 0 {
		return Peer{}, fmt.Errorf("id missing or not an integer")
	}
	var err error
	if p.Name, err = optString(w.Name, "name"); err != nil {
		return Peer{}, err
	}
	p.Name = cleanName(p.Name)
	if p.Host, err = optString(w.Host, "host"); err != nil {
		return Peer{}, err
	}
	if p.PublicIP, err = optString(w.PublicIP, "public_ip"); err != nil {
		return Peer{}, err
	}
	if p.NetworkName, err = optString(w.NetworkName, "network_name"); err != nil {
		return Peer{}, err
	}
	if p.NetworkName == "" {
		p.NetworkName = "default"
	}
	if p.NetworkSecret, err = optString(w.NetworkSecret, "network_secret"); err != nil {
		return Peer{}, err
	}
	if p.Protocol, err = optString(w.Protocol, "protocol"); err != nil {
		return Peer{}, err
	}
	p.Protocol = strings.ToLower(strings.TrimSpace(p.Protocol))
	if p.Protocol == "" {
		p.Protocol = "tcp"
	}
	if port, ok := plainUint(w.Port, 5); ok {
		if port > 65535 {
			return Peer{}, fmt.Errorf("port %v out of range", port)
		}
		p.Port = int(port)
	} else if len(w.Port) > 0 && string(w.Port) != "null" {
		var port float64
		if err := json.Unmarshal(w.Port, &port); err != nil || port != float64(int(port)) {
			return Peer{}, fmt.Errorf("port is not an integer")
		}
		if port < 0 || port > 65535 {
			return Peer{}, fmt.Errorf("port %v out of range", port)
		}
		p.Port = int(port)
	}
	if p.Host == "" && p.PublicIP != "" {
		h, port, err := net.SplitHostPort(p.PublicIP)
		if err != nil {
			h = p.PublicIP
		} else if p.Port == 0 {
			if n, err := strconv.Atoi(port); err == nil && n > 0 && n <= 65535 {
				p.Port = n
			}
		}
		p.Host = h
	}
	p.Host = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(p.Host), "["), "]")
	if err := checkHost(p.Host); err != nil {
		return Peer{}, err
	}
	def, ok := defaultPorts[p.Protocol]
	if !ok {
		p.Unsupported = true
	}
	if p.Port == 0 {
		p.Port = def
	}
	return p, nil
}

// checkHost accepts IP literals and DNS names; anything else would be an
// injection into the target URL.
func checkHost(h string) error {
	if h == "" {
		return fmt.Errorf("no host")
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	if len(h) > 253 {
		return fmt.Errorf("host name longer than 253 bytes")
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("host %q is not a valid name", truncate(h))
		}
		for _, r := range label {
			if !(r == '-' || r == '_' || r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r))) {
				return fmt.Errorf("host %q is not a valid name", truncate(h))
			}
		}
	}
	return nil
}

// cleanName strips control characters and bounds the length, since names
// only go to logs and reports.
func cleanName(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	if r := []rune(s); len(r) > maxNameLen {
		s = string(r[:maxNameLen]) + "…"
	}
	return s
}

func truncate(s string) string {
	if r := []rune(cleanName(s)); len(r) > 40 {
		return string(r[:40]) + "…"
	}
	return cleanName(s)
}
