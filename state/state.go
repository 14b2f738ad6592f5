// Package state keeps what one run hands to the next: the cached peer list,
// per-peer history, reports not yet delivered and the run lease. FileStore
// writes one JSON file atomically; DynamoStore keeps the same data in one
// DynamoDB table. Both behave the same and pass the same conformance suite.
package state

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// Schema and Version identify the file format; other values are refused.
const (
	Schema  = "neo-uptime-node/state"
	Version = 1
)

// Errors callers can test for.
var (
	ErrCorrupt       = errors.New("state is corrupt")
	ErrUnknownSchema = errors.New("state has an unknown schema or version")
	ErrNotOwner      = errors.New("lease is held by another run")
)

// LeaseHeldError says who holds the run lease, and until when.
type LeaseHeldError struct {
	Owner string
	Until time.Time
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("run lease held by %s until %s", e.Owner, e.Until.UTC().Format(time.RFC3339))
}

// Lease is the run lease: one run at a time probes and reports.
type Lease struct {
	Owner   string    `json:"owner,omitempty"`
	Expires time.Time `json:"expires,omitempty"`
}

// Held reports whether someone other than owner holds the lease at now.
func (l Lease) Held(owner string, now time.Time) bool {
	return l.Owner != "" && l.Owner != owner && now.Before(l.Expires)
}

// CachedPeer is a peer from the last successful fetch. The network secret
// is kept only sealed (see Sealer), never in clear.
type CachedPeer struct {
	ID           int64  `json:"id"`
	Name         string `json:"name,omitempty"`
	Host         string `json:"host"`
	Port         int    `json:"port"`
	Protocol     string `json:"protocol"`
	NetworkName  string `json:"network_name"`
	SealedSecret string `json:"sealed_secret,omitempty"`
	Unsupported  bool   `json:"unsupported,omitempty"`
}

// PeerCache is the last fetched peer list.
type PeerCache struct {
	FetchedAt time.Time    `json:"fetched_at"`
	Peers     []CachedPeer `json:"peers"`
}

// History is what we remember of one peer across runs.
type History struct {
	LastClass     string    `json:"last_class,omitempty"`
	LastRTTUS     int64     `json:"last_rtt_us,omitempty"`
	ConsecFail    int       `json:"consec_fail,omitempty"`
	ConsecOK      int       `json:"consec_ok,omitempty"`
	Reported      string    `json:"reported,omitempty"` // last status delivered: online/offline
	ChangedAt     time.Time `json:"changed_at,omitempty"`
	LastProbedAt  time.Time `json:"last_probed_at,omitempty"`
	LastVersion   string    `json:"last_version,omitempty"`
	LastPeerCount int       `json:"last_peer_count,omitempty"`
}

// Pending is a measured report that could not be delivered yet.
type Pending struct {
	ID           int64     `json:"id"`
	Status       string    `json:"status"`
	ResponseTime int64     `json:"response_time"`
	PeerCount    int       `json:"peer_count"`
	MeasuredAt   time.Time `json:"measured_at"`
}

// State is everything kept between runs.
type State struct {
	Schema  string            `json:"schema"`
	Version int               `json:"version"`
	Lease   Lease             `json:"lease,omitzero"` // as loaded; a FileStore keeps it in the lock file
	Peers   PeerCache         `json:"peer_cache"`
	History map[int64]History `json:"history"`
	Pending map[int64]Pending `json:"pending"`
	SavedAt time.Time         `json:"saved_at"`
}

// New returns an empty state of the current schema.
func New() *State {
	return &State{Schema: Schema, Version: Version, History: map[int64]History{}, Pending: map[int64]Pending{}}
}

func (s *State) check() error {
	if s.Schema != Schema || s.Version != Version {
		return fmt.Errorf("%w: schema %q version %d (this build reads %q version %d)", ErrUnknownSchema, s.Schema, s.Version, Schema, Version)
	}
	if s.History == nil {
		s.History = map[int64]History{}
	}
	if s.Pending == nil {
		s.Pending = map[int64]Pending{}
	}
	return nil
}

// Sealer seals network secrets for the peer cache with a key derived from
// the API key, so the state never holds them in clear. A Sealer with no key
// seals nothing: cached peers then carry no secret.
type Sealer struct{ aead cipher.AEAD }

// NewSealer derives the sealing key from apiKey.
func NewSealer(apiKey string) *Sealer {
	if apiKey == "" {
		return &Sealer{}
	}
	k := sha256.Sum256([]byte("neo-uptime-node state seal v1\x00" + apiKey))
	b, _ := aes.NewCipher(k[:])
	g, _ := cipher.NewGCM(b)
	return &Sealer{aead: g}
}

// Seal encrypts secret; "" stays "".
func (s *Sealer) Seal(secret string) string {
	if secret == "" || s.aead == nil {
		return ""
	}
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return base64.RawStdEncoding.EncodeToString(s.aead.Seal(nonce, nonce, []byte(secret), nil))
}

// Open decrypts a sealed secret.
func (s *Sealer) Open(sealed string) (string, error) {
	if sealed == "" {
		return "", nil
	}
	if s.aead == nil {
		return "", errors.New("no api key to open the cached secret")
	}
	b, err := base64.RawStdEncoding.DecodeString(sealed)
	if err != nil || len(b) < s.aead.NonceSize() {
		return "", errors.New("cached secret is malformed")
	}
	pt, err := s.aead.Open(nil, b[:s.aead.NonceSize()], b[s.aead.NonceSize():], nil)
	if err != nil {
		return "", errors.New("cached secret was sealed with another api key")
	}
	return string(pt), nil
}
