package harness

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFiguresLine(t *testing.T) {
	rec := &recordingTB{TB: t}
	f := NewFigures(rec, "leader_kill")
	f.Duration(FigureDetectionTime, 2345678*time.Microsecond)
	f.Count(FigureAcknowledged, 40)
	f.AddReport(&InvariantReport{LostAcks: 1, Overcommitted: 2})
	f.Count(FigureAcknowledged, 41)
	f.Set("etcd_members", "3")

	want := "FIGURES scenario=leader_kill detection_time=2.346s " +
		"acknowledged=41 lost=1 overcommitted=2 etcd_members=3"
	require.Equal(t, want, f.Line())
	got, ok := f.Get(FigureAcknowledged)
	require.True(t, ok)
	require.Equal(t, "41", got)

	f.Report()
	require.Contains(t, rec.logs, want)
	require.Contains(t, rec.logs, "figure leader_kill detection_time = 2.346s")
	require.False(t, rec.failed)
}

func TestFiguresReportAtCleanup(t *testing.T) {
	rec := &recordingTB{TB: t}
	t.Run("scenario", func(t *testing.T) {
		rec.TB = t
		f := NewFigures(rec, "proxy_cut")
		d := f.Since(FigureRecoveryTime, time.Now().Add(-time.Second))
		require.GreaterOrEqual(t, d, time.Second)
	})
	require.Len(t, rec.logs, 2)
	require.True(t, strings.HasPrefix(rec.logs[1],
		"FIGURES scenario=proxy_cut recovery_time=1"), rec.logs[1])
}

func TestFiguresRejectsBadNames(t *testing.T) {
	rec := &recordingTB{TB: t}
	f := NewFigures(rec, "ok")
	f.Count("two words", 1)
	require.True(t, rec.failed)
	require.Contains(t, rec.message, `"two words"`)

	rec.failed = false
	f.Set("note", "a b")
	require.True(t, rec.failed)
	require.Equal(t, "FIGURES scenario=ok", f.Line())

	func() {
		defer func() { _ = recover() }()
		NewFigures(rec, "bad name")
	}()
	require.Contains(t, rec.message, `invalid scenario name "bad name"`)
}
