package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/integration/harness"
)

func TestMain(m *testing.M) {
	harness.Main(m)
}

// hasGoFiles reports whether the package folder pkg, relative to the
// module root, contains non-test Go files.
func hasGoFiles(t *testing.T, pkg string) bool {
	t.Helper()
	root, err := harness.ModuleRoot()
	require.NoError(t, err)
	files, err := filepath.Glob(filepath.Join(root, pkg, "*.go"))
	require.NoError(t, err)
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			return true
		}
	}
	return false
}

func TestBinariesReportVersion(t *testing.T) {
	harness.SkipShort(t)
	for _, pkg := range []string{
		harness.AgentPackage,
		harness.CoordinatorPackage,
	} {
		t.Run(filepath.Base(pkg), func(t *testing.T) {
			if !hasGoFiles(t, pkg) {
				t.Skipf("%s has no Go files yet", pkg)
			}
			p := harness.StartProcess(t, harness.ProcessConfig{
				Path: harness.Binary(t, pkg),
				Args: []string{"--version"},
			})
			st, err := p.Wait(10 * time.Second)
			require.NoError(t, err)
			require.Equal(t, 0, st.Code, "output:\n%s", p.Logs())
			require.Contains(t, p.Logs(), harness.BuildVersion)
		})
	}
}
