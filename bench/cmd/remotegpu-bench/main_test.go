package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/bench"
)

func TestWriteKeepingNotes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docs", "benchmarks.md")

	require.NoError(t, writeKeepingNotes(path, []byte("# first\n")))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "# first\n"+bench.NotesMarker+"\n", string(got))

	notes := string(got) + "\nWhere the time goes: etcd fsync.\n"
	require.NoError(t, os.WriteFile(path, []byte(notes), 0o644))
	require.NoError(t, writeKeepingNotes(path, []byte("# second\n")))
	got, err = os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "# second\n"+bench.NotesMarker+"\n\nWhere the time goes: etcd fsync.\n",
		string(got))
}
