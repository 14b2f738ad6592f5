// Package probe turns targets into results: it runs EasyTier probes in
// parallel under one deadline and classifies every outcome into a small
// closed set of classes, so a monitor's own failures never look like a
// node's.
package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"

	"github.com/neouptime/neo-uptime-node/probe/easytier"
	"github.com/neouptime/neo-uptime-node/probe/easytier/wire"
	"github.com/neouptime/neo-uptime-node/probe/internal/oserr"
)

// Class is the coarse outcome of one probe.
type Class string

// The closed set of classes.
const (
	ClassOK          Class = "ok"
	ClassTimeout     Class = "timeout"
	ClassRefused     Class = "refused"
	ClassUnreachable Class = "unreachable"
	ClassDNS         Class = "dns"
	ClassProtocol    Class = "protocol"
	// ClassCanceled means the job budget ran out: not the node's fault,
	// so the peer is reported as unknown.
	ClassCanceled Class = "canceled"
	// ClassInternal is our bug (a panic, an unsafe packet refused).
	ClassInternal Class = "internal"
)

// Classes lists every class, in display order.
var Classes = []Class{ClassOK, ClassTimeout, ClassRefused, ClassUnreachable, ClassDNS, ClassProtocol, ClassCanceled, ClassInternal}

// ErrPanic wraps a recovered panic.
var ErrPanic = errors.New("probe panicked")

// Classify maps a probe error to its class. It is called once per result;
// it never looks at error strings.
func Classify(err error) Class {
	var (
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		recErr  tls.RecordHeaderError
		alert   tls.AlertError
	)
	switch {
	case err == nil:
		return ClassOK
	case errors.Is(err, ErrPanic), errors.Is(err, easytier.ErrUnsafeSend):
		return ClassInternal
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	case errors.As(err, &dnsErr):
		if dnsErr.IsTimeout {
			return ClassTimeout
		}
		return ClassDNS
	case oserr.Refused(err):
		return ClassRefused
	case oserr.Unreachable(err):
		return ClassUnreachable
	case errors.Is(err, easytier.ErrNoPong), errors.Is(err, easytier.ErrHandshakeTimeout),
		errors.Is(err, easytier.ErrSackTimeout):
		return ClassTimeout
	case errors.Is(err, easytier.ErrWrongSecret), errors.Is(err, easytier.ErrRejected),
		errors.Is(err, easytier.ErrSecureModeRequired), errors.Is(err, easytier.ErrUnsupportedProtocol),
		errors.Is(err, easytier.ErrClosedBeforeReply), errors.Is(err, easytier.ErrUpgrade),
		errors.Is(err, easytier.ErrTextMessage), errors.Is(err, easytier.ErrPeerIDConflict),
		errors.Is(err, easytier.ErrBadTarget), errors.Is(err, easytier.ErrTargetDenied),
		errors.Is(err, easytier.ErrUnexpectedPacket),
		errors.Is(err, wire.ErrShort), errors.Is(err, wire.ErrTooLong), errors.Is(err, wire.ErrProto),
		errors.Is(err, wire.ErrDigestLength), errors.Is(err, wire.ErrUDPLength),
		errors.As(err, &certErr), errors.As(err, &unknown), errors.As(err, &recErr), errors.As(err, &alert):
		return ClassProtocol
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ClassTimeout
	case oserr.Reset(err):
		return ClassProtocol
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ClassTimeout
	}
	return ClassProtocol
}
