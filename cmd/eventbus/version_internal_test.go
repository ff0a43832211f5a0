package main

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestVersionOf(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/shared-infra/eventbus", Version: "v0.4.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "6a24dc1e0b1c"},
			{Key: "vcs.time", Value: "2026-12-04T14:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		name       string
		bi         *debug.BuildInfo
		ldV, ldRev string
		want       buildVersion
		line       string
	}{
		{"stamped", bi, "", "", buildVersion{Version: "v0.4.0", Revision: "6a24dc1e0b1c", Time: "2026-12-04T14:00:00Z", Modified: true, GoVersion: "go1.26.8"},
			"eventbus v0.4.0, revision 6a24dc1e0b1c (modified), committed 2026-12-04T14:00:00Z, go1.26.8 "},
		{"ldflags win", bi, "v1.0.0", "abc", buildVersion{Version: "v1.0.0", Revision: "abc", Time: "2026-12-04T14:00:00Z", Modified: true, GoVersion: "go1.26.8"},
			"eventbus v1.0.0, revision abc (modified)"},
		{"no build info", nil, "", "", buildVersion{Version: "(devel)", Revision: "unknown"}, "eventbus (devel), revision unknown, go"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := versionOf(tc.bi, tc.ldV, tc.ldRev)
			got.Platform = ""
			if tc.want.GoVersion == "" {
				tc.want.GoVersion = got.GoVersion
			}
			if got != tc.want {
				t.Errorf("versionOf = %+v, want %+v", got, tc.want)
			}
			if s := got.String(); !strings.HasPrefix(s, tc.line) {
				t.Errorf("String() = %q, want prefix %q", s, tc.line)
			}
		})
	}
}

func TestBuildInfoCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(buildInfoCollector(buildVersion{Version: "v0.4.0", Revision: "abc", Modified: true, GoVersion: "go1.26.8"}))
	want := `# HELP eventbus_build_info Build information of the eventbus binary; always 1.
# TYPE eventbus_build_info gauge
eventbus_build_info{goversion="go1.26.8",modified="true",revision="abc",version="v0.4.0"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), buildInfoMetric); err != nil {
		t.Error(err)
	}
}
