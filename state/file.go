package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// FileStore keeps the state in one JSON file. Every write goes to a temp
// file in the same directory, is fsynced, renamed over the old file and the
// directory fsynced, so a crash at any instant leaves the old or the new
// file, never a torn one. A sidecar "<path>.lock" file, held with flock
// (LockFileEx on Windows) for each read-modify-write, serialises
// processes.
//
// The run lease lives in that lock file, not in the state: taking and
// giving it up then never reads or rewrites the state (a run reads the
// state once and writes it once; with 1,000 peers the lease in the state
// file cost four parses and three writes of it, ~38 ms of CPU per run).
// The lease is rewritten in place without fsync. Only its holder writes
// it, so a lease left empty or torn by a crash belongs to a run that is
// gone, and reading it as free is right.
type FileStore struct {
	Path string
	Now  func() time.Time // default time.Now
}

var _ interface {
	Acquire(context.Context, string, time.Duration) error
	Release(context.Context, string) error
	Load(context.Context) (*State, error)
	Save(context.Context, string, *State) error
} = (*FileStore)(nil)

func (f *FileStore) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// locked runs fn while holding the sidecar lock; fn gets the lock file,
// which holds the lease.
func (f *FileStore) locked(ctx context.Context, fn func(lf *os.File) error) error {
	lf, err := os.OpenFile(f.Path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening lock file: %w", err)
	}
	defer lf.Close()
	for {
		busy, err := tryLock(lf)
		if err != nil {
			return fmt.Errorf("locking %s: %w", f.Path, err)
		}
		if !busy {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("locking %s: %w", f.Path, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	defer unlock(lf) //nolint:errcheck
	return fn(lf)
}

// maxLeaseBytes bounds what is read of the lock file.
const maxLeaseBytes = 4 << 10

// readLease returns the lease in the lock file; an empty or unreadable
// one is free (see FileStore).
func readLease(lf *os.File) Lease {
	b, err := io.ReadAll(io.NewSectionReader(lf, 0, maxLeaseBytes))
	var l Lease
	if err != nil || json.Unmarshal(b, &l) != nil {
		return Lease{}
	}
	return l
}

// writeLease replaces the lease in the lock file; a zero lease empties it.
func writeLease(lf *os.File, l Lease) error {
	var b []byte
	if l.Owner != "" {
		b, _ = json.Marshal(l)
	}
	if err := lf.Truncate(0); err != nil {
		return fmt.Errorf("writing lease: %w", err)
	}
	if _, err := lf.WriteAt(b, 0); err != nil {
		return fmt.Errorf("writing lease: %w", err)
	}
	return nil
}

// read parses the file; a missing file is an empty state.
func (f *FileStore) read() (*State, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return New(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading state %s: %w", f.Path, err)
	}
	st := &State{}
	if err := decodeState(b, st); err != nil {
		return nil, fmt.Errorf("%w: %s: %v (the file is kept; move it away to start afresh)", ErrCorrupt, f.Path, err)
	}
	if err := st.check(); err != nil {
		return nil, fmt.Errorf("%s: %w (the file is kept)", f.Path, err)
	}
	return st, nil
}

// write replaces the file atomically and durably with st, without its
// lease. The JSON is compact (one line; `jq .` shows it indented):
// indenting cost as much CPU as encoding.
func (f *FileStore) write(st *State) error {
	next := *st
	next.Schema, next.Version, next.SavedAt, next.Lease = Schema, Version, f.now().UTC(), Lease{}
	b, err := marshalState(&next)
	if err != nil {
		return err
	}
	dir := filepath.Dir(f.Path)
	var r [6]byte
	_, _ = rand.Read(r[:])
	tmp := f.Path + ".tmp-" + hex.EncodeToString(r[:])
	t, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing state: %w", err)
	}
	_, werr := t.Write(append(b, '\n'))
	serr := t.Sync()
	cerr := t.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing state %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, f.Path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replacing state %s: %w", f.Path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Acquire takes the run lease for owner for ttl, unless another owner
// holds an unexpired one (then it returns a *LeaseHeldError).
func (f *FileStore) Acquire(ctx context.Context, owner string, ttl time.Duration) error {
	return f.locked(ctx, func(lf *os.File) error {
		now := f.now()
		if l := readLease(lf); l.Held(owner, now) {
			return &LeaseHeldError{Owner: l.Owner, Until: l.Expires}
		}
		return writeLease(lf, Lease{Owner: owner, Expires: now.Add(ttl).UTC()})
	})
}

// Release gives the lease up if owner still holds it.
func (f *FileStore) Release(ctx context.Context, owner string) error {
	return f.locked(ctx, func(lf *os.File) error {
		if readLease(lf).Owner != owner {
			return nil
		}
		return writeLease(lf, Lease{})
	})
}

// Load reads the state, with the lease as it is now.
func (f *FileStore) Load(ctx context.Context) (*State, error) {
	var st *State
	err := f.locked(ctx, func(lf *os.File) error {
		var err error
		if st, err = f.read(); err != nil {
			return err
		}
		st.Lease = readLease(lf)
		return nil
	})
	return st, err
}

// Save writes st (peer cache, history, pending) if owner still holds the
// lease; the lease is kept as it is.
func (f *FileStore) Save(ctx context.Context, owner string, st *State) error {
	return f.locked(ctx, func(lf *os.File) error {
		if l := readLease(lf); l.Owner != owner {
			return fmt.Errorf("saving state: %w (%s)", ErrNotOwner, l.Owner)
		}
		return f.write(st)
	})
}
