// Package wire is the EasyTier wire codec the prober needs: bytes in, bytes
// out, with no network, context or logging, so that every decoder can be
// fuzzed and every encoder checked against the allowed message set.
//
// Layering (all integers little-endian unless noted):
//
//	transport frame  TCP: u32 len (16..2000) | UDP: 8-byte tunnel header | WS: one binary message
//	  header (16 B)   from u32 | to u32 | type u8 | flags u8 | fwd u8 | rsvd u8 | len u32
//	    payload       HandshakeRequest | ping seq u32 | RpcPacket (maybe AEAD-sealed)
//
// UDP tunnel header: conn_id u32 | msg_type u8 (1 SYN, 2 SACK, 3 DATA) | pad u8 | len u16,
// where len is the datagram length minus 8. SYN and SACK carry an 8-byte magic.
//
// Protobuf messages are hand-encoded from their field numbers: the prober
// emits only HandshakeRequest, Ping, Pong (an echo of a node Ping),
// RpcPacket{RpcRequest{SyncRouteInfoRequest}} with no peer infos, connection
// table or foreign-network infos, and RpcPacket{RpcResponse{SyncRouteInfoResponse}}
// without its error field. Fields whose values could crash a node (see the
// protocol notes, "safety rules") cannot be expressed by this package's encoders.
//
// The network digest and the RPC keys are derived with SipHash-1-3 keyed with
// zeros (Rust's DefaultHasher) over an accumulating byte stream.
package wire
