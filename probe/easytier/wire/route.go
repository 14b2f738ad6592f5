package wire

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// RoutePeerInfo holds the fields of a node's RoutePeerInfo the prober reports.
type RoutePeerInfo struct {
	PeerID          uint32
	Hostname        string
	EasyTierVersion string
	IsPublicServer  bool
	Version         uint32 // route-info version counter
}

// SoftwareVersion is the part of EasyTierVersion before the first '-',
// which is what the reference probers report ("2.6.4-8428a89d" → "2.6.4").
func (r RoutePeerInfo) SoftwareVersion() string {
	v, _, _ := strings.Cut(r.EasyTierVersion, "-")
	return v
}

// ForeignNetwork is one entry of a node's foreign-network table.
type ForeignNetwork struct {
	PeerID      uint32 // the relaying node
	NetworkName string
	PeerCount   int
	Version     uint32
}

// RouteSync is the part of a SyncRouteInfoRequest the prober reads.
type RouteSync struct {
	PeerID     uint32
	Peers      []RoutePeerInfo
	Foreign    []ForeignNetwork
	HasPeers   bool
	HasForeign bool // the push carried foreign_network_infos
}

// ParseRouteSync decodes a node's SyncRouteInfoRequest.
func ParseRouteSync(b []byte) (RouteSync, error) {
	var rs RouteSync
	err := eachField(b, func(f field) error {
		switch f.num {
		case 1:
			rs.PeerID = uint32(f.v)
		case 4:
			rs.HasPeers = true
			return eachField(f.b, func(g field) error {
				if g.num != 1 || g.typ != protowire.BytesType {
					return nil
				}
				info, err := parseRoutePeerInfo(g.b)
				if err == nil {
					rs.Peers = append(rs.Peers, info)
				}
				return err
			})
		case 6:
			rs.HasForeign = true
			return eachField(f.b, func(g field) error {
				if g.num != 1 || g.typ != protowire.BytesType {
					return nil
				}
				fn, err := parseForeignInfo(g.b)
				if err == nil {
					rs.Foreign = append(rs.Foreign, fn)
				}
				return err
			})
		}
		return nil
	})
	if err != nil {
		return RouteSync{}, fmt.Errorf("decoding route sync: %w", err)
	}
	return rs, nil
}

func parseRoutePeerInfo(b []byte) (RoutePeerInfo, error) {
	var r RoutePeerInfo
	err := eachField(b, func(f field) error {
		switch f.num {
		case 1:
			r.PeerID = uint32(f.v)
		case 6:
			r.Hostname = string(f.b)
		case 9:
			r.Version = uint32(f.v)
		case 10:
			r.EasyTierVersion = string(f.b)
		case 11:
			return eachField(f.b, func(g field) error {
				if g.num == 1 && g.typ == protowire.VarintType {
					r.IsPublicServer = g.v != 0
				}
				return nil
			})
		}
		return nil
	})
	return r, err
}

func parseForeignInfo(b []byte) (ForeignNetwork, error) {
	var fn ForeignNetwork
	err := eachField(b, func(f field) error {
		switch f.num {
		case 1: // key
			return eachField(f.b, func(g field) error {
				switch g.num {
				case 1:
					fn.PeerID = uint32(g.v)
				case 2:
					fn.NetworkName = string(g.b)
				}
				return nil
			})
		case 2: // value
			return eachField(f.b, func(g field) error {
				switch {
				case g.num == 1 && g.typ == protowire.BytesType: // packed
					for p := g.b; len(p) > 0; {
						_, n := protowire.ConsumeVarint(p)
						if n < 0 {
							return ErrProto
						}
						p = p[n:]
						fn.PeerCount++
					}
				case g.num == 1 && g.typ == protowire.VarintType: // unpacked
					fn.PeerCount++
				case g.num == 3:
					fn.Version = uint32(g.v)
				}
				return nil
			})
		}
		return nil
	})
	return fn, err
}

// NetworkCount reproduces EasyTier's network_count for nodeID: the number
// of distinct foreign network names relayed by that node (empty ones too),
// and how many of them currently have peers.
func NetworkCount(foreign []ForeignNetwork, nodeID uint32) (total, withPeers int) {
	best := map[string]ForeignNetwork{}
	for _, f := range foreign {
		if f.PeerID != nodeID {
			continue
		}
		if old, ok := best[f.NetworkName]; !ok || f.Version >= old.Version {
			best[f.NetworkName] = f
		}
	}
	for _, f := range best {
		if f.PeerCount > 0 {
			withPeers++
		}
	}
	return len(best), withPeers
}
