package wire

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Route service descriptor values (OspfRouteRpc.SyncRouteInfo, method 1).
const (
	RouteProto   = "OspfRouteRpc"
	RouteService = "OspfRouteRpc"
	RouteMethod  = 1
	// compressionNone is CompressionAlgoPb.None.
	compressionNone = 1
	compressionZstd = 2
)

// Descriptor addresses an RPC method.
type Descriptor struct {
	Domain, Proto, Service string
	Method                 uint32
}

// IsRouteSync reports whether d names OspfRouteRpc.SyncRouteInfo.
func (d Descriptor) IsRouteSync() bool {
	return d.Proto == RouteProto && d.Service == RouteService && d.Method == RouteMethod
}

// RPCPacket is one piece of an RPC message.
type RPCPacket struct {
	FromPeer, ToPeer uint32
	TransactionID    int64
	Descriptor       Descriptor
	HasDescriptor    bool
	Body             []byte
	IsRequest        bool
	TotalPieces      uint32
	PieceIdx         uint32
	TraceID          int32
	CompressionAlgo  uint32 // 0 when compression_info is absent
}

func appendDescriptor(b []byte, d Descriptor) []byte {
	var buf [96]byte // nested messages are built on the stack, then copied in
	m := buf[:0]
	m = appendBytesField(m, 1, []byte(d.Domain))
	m = appendBytesField(m, 2, []byte(d.Proto))
	m = appendBytesField(m, 3, []byte(d.Service))
	m = appendVarintField(m, 4, uint64(d.Method))
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

// appendRPCPacket encodes a single-piece RpcPacket with a descriptor and
// compression_info {None, None}: the only shape the prober ever sends.
func appendRPCPacket(b []byte, from, to uint32, txID int64, d Descriptor, body []byte, isReq bool, traceID int32) []byte {
	b = appendVarintField(b, 1, uint64(from))
	b = appendVarintField(b, 2, uint64(to))
	b = appendVarintField(b, 3, uint64(txID))
	b = appendDescriptor(b, d)
	b = appendBytesField(b, 5, body)
	if isReq {
		b = appendVarintField(b, 6, 1)
	}
	b = appendVarintField(b, 7, 1) // total_pieces
	// piece_idx 0 is the proto3 default and is omitted
	b = appendVarintField(b, 9, uint64(uint32(traceID)))
	b = protowire.AppendTag(b, 10, protowire.BytesType)
	return protowire.AppendBytes(b, []byte{0x08, compressionNone, 0x10, compressionNone})
}

// AppendRouteSyncRequest encodes the RpcPacket that asks a node to push its
// routes: SyncRouteInfoRequest{my_peer_id, my_session_id, is_initiator=true}
// with no peer infos, no connection table and no foreign-network infos.
func AppendRouteSyncRequest(b []byte, from, to uint32, txID int64, network string, sessionID uint64) []byte {
	var reqBuf, rpcBuf [32]byte
	req := reqBuf[:0]
	req = appendVarintField(req, 1, uint64(from))
	req = appendVarintField(req, 2, sessionID)
	req = appendVarintField(req, 3, 1)
	rpcReq := rpcBuf[:0]
	rpcReq = appendBytesField(rpcReq, 2, req)
	rpcReq = appendVarintField(rpcReq, 3, 3000) // timeout_ms, must be > 0
	d := Descriptor{Domain: network, Proto: RouteProto, Service: RouteService, Method: RouteMethod}
	return appendRPCPacket(b, from, to, txID, d, rpcReq, true, 0)
}

// AppendRouteSyncResponse encodes our answer to a node's SyncRouteInfo call:
// SyncRouteInfoResponse{is_initiator=true, session_id}. Its error field is
// never written: error 0 means DuplicatePeerId and makes a node panic.
func AppendRouteSyncResponse(b []byte, from, to uint32, req RPCPacket, sessionID uint64) []byte {
	var respBuf, rpcBuf [32]byte
	resp := respBuf[:0]
	resp = appendVarintField(resp, 1, 1)
	resp = appendVarintField(resp, 2, sessionID)
	rpcResp := rpcBuf[:0]
	rpcResp = protowire.AppendTag(rpcResp, 1, protowire.BytesType)
	rpcResp = protowire.AppendBytes(rpcResp, resp)
	return appendRPCPacket(b, from, to, req.TransactionID, req.Descriptor, rpcResp, false, req.TraceID)
}

// ParseRPCPacket decodes one RpcPacket piece.
func ParseRPCPacket(b []byte) (RPCPacket, error) {
	var p RPCPacket
	err := eachField(b, func(f field) error {
		switch f.num {
		case 1:
			p.FromPeer = uint32(f.v)
		case 2:
			p.ToPeer = uint32(f.v)
		case 3:
			p.TransactionID = int64(f.v)
		case 4:
			p.HasDescriptor = true
			return eachField(f.b, func(g field) error {
				switch g.num {
				case 1:
					p.Descriptor.Domain = string(g.b)
				case 2:
					p.Descriptor.Proto = string(g.b)
				case 3:
					p.Descriptor.Service = string(g.b)
				case 4:
					p.Descriptor.Method = uint32(g.v)
				}
				return nil
			})
		case 5:
			p.Body = f.b
		case 6:
			p.IsRequest = f.v != 0
		case 7:
			p.TotalPieces = uint32(f.v)
		case 8:
			p.PieceIdx = uint32(f.v)
		case 9:
			p.TraceID = int32(f.v)
		case 10:
			return eachField(f.b, func(g field) error {
				if g.num == 1 {
					p.CompressionAlgo = uint32(g.v)
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return RPCPacket{}, fmt.Errorf("decoding rpc packet: %w", err)
	}
	return p, nil
}

// RPCRequestInner returns the method input carried by an RpcRequest body.
func RPCRequestInner(body []byte) ([]byte, error) {
	var inner []byte
	err := eachField(body, func(f field) error {
		if f.num == 2 {
			inner = f.b
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("decoding rpc request: %w", err)
	}
	return inner, nil
}

// RPCResponseResult reports an RpcResponse's output bytes and whether it
// carried an error.
func RPCResponseResult(body []byte) (resp []byte, hasError bool, err error) {
	err = eachField(body, func(f field) error {
		switch f.num {
		case 1:
			resp = f.b
		case 2:
			hasError = true
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("decoding rpc response: %w", err)
	}
	return resp, hasError, nil
}
