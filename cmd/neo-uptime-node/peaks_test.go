package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCountFDs_MatchesProc(t *testing.T) {
	buf := make([]byte, 4096) // small on purpose: several getdents calls
	before := countFDs(buf)
	var files []*os.File
	for i := 0; i < 300; i++ {
		f, err := os.Create(filepath.Join(t.TempDir(), "f"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	after := countFDs(buf)
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f.Close()
	}
	if after-before != 300 {
		t.Errorf("300 more open files counted as %d more (%d → %d)", after-before, before, after)
	}
	// ReadDir's own descriptor is listed too.
	if want := len(ents) - 1; after != want {
		t.Errorf("countFDs = %d, /proc/self/fd lists %d others", after, want)
	}
}
