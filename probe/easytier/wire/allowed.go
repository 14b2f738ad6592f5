package wire

import "fmt"

// CheckOutbound reports whether packet (header + payload) is one the prober
// may send to a node. It is the executable form of the protocol's safety
// rules; the client runs it on every packet before writing it.
//
// Allowed: HandShake with a valid HandshakeRequest; Ping with a 4-byte seq;
// Pong with at least 4 payload bytes; RpcReq/RpcResp that are single-piece,
// carry a descriptor for OspfRouteRpc.SyncRouteInfo, use no compression, a
// positive timeout, no peer infos, no connection table, no foreign-network
// infos, and no SyncRouteInfoResponse.error. Flags are always 0.
func CheckOutbound(packet []byte) error {
	h, payload, err := ParsePacket(packet)
	if err != nil {
		return err
	}
	if h.Flags != 0 || h.Forward != 1 {
		return fmt.Errorf("flags %#x forward %d: %w", h.Flags, h.Forward, ErrUnsafeMessage)
	}
	switch h.Type {
	case TypeHandShake:
		if h.To != 0 {
			return fmt.Errorf("handshake to peer %d: %w", h.To, ErrUnsafeMessage)
		}
		_, err := ParseHandshake(payload)
		return err
	case TypePing:
		if len(payload) != 4 {
			return fmt.Errorf("ping of %d bytes: %w", len(payload), ErrUnsafeMessage)
		}
		return nil
	case TypePong:
		if len(payload) < 4 {
			return fmt.Errorf("pong of %d bytes: %w", len(payload), ErrUnsafeMessage)
		}
		return nil
	case TypeRPCReq, TypeRPCResp:
		return checkRPC(h, payload)
	}
	return fmt.Errorf("packet type %d: %w", h.Type, ErrUnsafeMessage)
}

func checkRPC(h Header, payload []byte) error {
	p, err := ParseRPCPacket(payload)
	if err != nil {
		return err
	}
	isReq := h.Type == TypeRPCReq
	switch {
	case p.IsRequest != isReq:
		return fmt.Errorf("rpc is_request %v in type %d: %w", p.IsRequest, h.Type, ErrUnsafeMessage)
	case p.TotalPieces != 1 || p.PieceIdx != 0:
		return fmt.Errorf("rpc piece %d/%d: %w", p.PieceIdx, p.TotalPieces, ErrUnsafeMessage)
	case !p.HasDescriptor || !p.Descriptor.IsRouteSync():
		return fmt.Errorf("rpc descriptor %+v: %w", p.Descriptor, ErrUnsafeMessage)
	case p.CompressionAlgo != compressionNone:
		return fmt.Errorf("rpc compression %d: %w", p.CompressionAlgo, ErrUnsafeMessage)
	case p.FromPeer != h.From || p.ToPeer != h.To:
		return fmt.Errorf("rpc peers differ from header: %w", ErrUnsafeMessage)
	}
	if isReq {
		return checkSyncRequest(p.Body)
	}
	return checkSyncResponse(p.Body)
}

func checkSyncRequest(body []byte) error {
	var inner []byte
	var timeout int64
	err := eachField(body, func(f field) error {
		switch f.num {
		case 2:
			inner = f.b
		case 3:
			timeout = int64(int32(f.v))
		default:
			return fmt.Errorf("rpc request field %d: %w", f.num, ErrUnsafeMessage)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if timeout <= 0 {
		return fmt.Errorf("rpc timeout_ms %d: %w", timeout, ErrUnsafeMessage)
	}
	return eachField(inner, func(f field) error {
		if f.num > 3 { // peer_infos, conn_bitmap, foreign infos, conn_peer_list
			return fmt.Errorf("route sync request field %d: %w", f.num, ErrUnsafeMessage)
		}
		return nil
	})
}

func checkSyncResponse(body []byte) error {
	resp, hasErr, err := RPCResponseResult(body)
	if err != nil {
		return err
	}
	if hasErr {
		return fmt.Errorf("rpc response with error: %w", ErrUnsafeMessage)
	}
	return eachField(resp, func(f field) error {
		if f.num != 1 && f.num != 2 { // field 3 (error=DuplicatePeerId) aborts nodes
			return fmt.Errorf("route sync response field %d: %w", f.num, ErrUnsafeMessage)
		}
		return nil
	})
}
