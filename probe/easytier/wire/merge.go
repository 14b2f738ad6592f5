package wire

import "fmt"

// maxPieces bounds reassembly (EasyTier accepts up to 32768 pieces; one probe
// has no use for more than a few hundred kilobytes of route information).
const (
	maxPieces    = 1024
	maxMergeSize = 1 << 20
)

// Merger reassembles multi-piece RPC messages from one peer. It keeps one
// message in progress per (from, transaction, request) and bounds memory.
type Merger struct {
	cur   mergeKey
	parts [][]byte
	got   int
	size  int
	first RPCPacket
}

type mergeKey struct {
	from  uint32
	tx    int64
	isReq bool
	total uint32
}

// Add feeds one piece. It returns the whole message (piece 0's header with
// the concatenated body) once every piece has arrived.
func (m *Merger) Add(p RPCPacket) (RPCPacket, bool, error) {
	if p.TotalPieces == 0 && p.PieceIdx == 0 {
		if !p.HasDescriptor {
			return RPCPacket{}, false, fmt.Errorf("legacy single piece without descriptor: %w", ErrPieces)
		}
		return p, true, nil // legacy single packet
	}
	if p.TotalPieces > maxPieces || p.PieceIdx >= p.TotalPieces {
		return RPCPacket{}, false, fmt.Errorf("piece %d of %d: %w", p.PieceIdx, p.TotalPieces, ErrPieces)
	}
	if p.TotalPieces == 1 {
		if !p.HasDescriptor {
			return RPCPacket{}, false, fmt.Errorf("single piece without descriptor: %w", ErrPieces)
		}
		return p, true, nil
	}
	k := mergeKey{p.FromPeer, p.TransactionID, p.IsRequest, p.TotalPieces}
	if k != m.cur || m.parts == nil {
		m.cur, m.parts, m.got, m.size = k, make([][]byte, p.TotalPieces), 0, 0
	}
	if m.parts[p.PieceIdx] != nil {
		return RPCPacket{}, false, nil // duplicate piece
	}
	m.size += len(p.Body)
	if m.size > maxMergeSize {
		m.parts = nil
		return RPCPacket{}, false, fmt.Errorf("merged rpc over %d bytes: %w", maxMergeSize, ErrPieces)
	}
	m.parts[p.PieceIdx] = append([]byte{}, p.Body...)
	m.got++
	if p.PieceIdx == 0 {
		m.first = p
	}
	if m.got < len(m.parts) {
		return RPCPacket{}, false, nil
	}
	whole := m.first
	if !whole.HasDescriptor {
		m.parts = nil
		return RPCPacket{}, false, fmt.Errorf("piece 0 without descriptor: %w", ErrPieces)
	}
	body := make([]byte, 0, m.size)
	for _, part := range m.parts {
		body = append(body, part...)
	}
	whole.Body = body
	m.parts = nil
	return whole, true, nil
}

// CheckCompression rejects bodies compressed with an algorithm we did not
// advertise (we never accept zstd, so a conforming node never uses it).
func CheckCompression(p RPCPacket) error {
	if p.CompressionAlgo == compressionZstd {
		return ErrCompressed
	}
	return nil
}
