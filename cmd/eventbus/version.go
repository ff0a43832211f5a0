package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
)

// Set with -ldflags "-X main.version=v1.2.3 -X main.revision=<commit>" when
// the build has no VCS information of its own (a Docker build context
// without .git, a git worktree: the go command stamps vcs.* only in a
// repository's main checkout). Empty means: from runtime/debug.BuildInfo.
var (
	version  string
	revision string
)

// buildVersion is what `eventbus version` prints and what the
// eventbus_build_info metric carries.
type buildVersion struct {
	// Version is the module version: a tag (v1.2.0), a pseudo-version
	// (v0.0.0-20261204142659-6a24dc1e0b1c+dirty) or "(devel)" for a build
	// from a checkout without VCS stamping.
	Version string `json:"version"`
	// Revision is the VCS commit (vcs.revision), "unknown" when not stamped.
	Revision string `json:"revision"`
	// Time is the commit time (vcs.time), empty when not stamped.
	Time string `json:"time,omitempty"`
	// Modified is vcs.modified: the working tree had uncommitted changes.
	Modified bool `json:"modified"`
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string `json:"goVersion"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
}

// readBuildVersion reads the binary's build information, with the -ldflags
// values above winning over it.
func readBuildVersion() buildVersion {
	bi, _ := debug.ReadBuildInfo()
	return versionOf(bi, version, revision)
}

// versionOf is readBuildVersion on a given BuildInfo (nil when the binary
// has none) and overrides.
func versionOf(bi *debug.BuildInfo, ldVersion, ldRevision string) buildVersion {
	v := buildVersion{Version: "(devel)", Revision: "unknown", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if bi.Main.Version != "" {
			v.Version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			v.GoVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	if ldVersion != "" {
		v.Version = ldVersion
	}
	if ldRevision != "" {
		v.Revision = ldRevision
	}
	return v
}

// String is the one line of `eventbus --version`.
func (v buildVersion) String() string {
	rev := v.Revision
	if v.Modified {
		rev += " (modified)"
	}
	s := fmt.Sprintf("eventbus %s, revision %s", v.Version, rev)
	if v.Time != "" {
		s += ", committed " + v.Time
	}
	return s + ", " + v.GoVersion + " " + v.Platform
}

// buildInfoMetric is the name of the build information gauge.
const buildInfoMetric = "eventbus_build_info"

// buildInfoCollector returns the eventbus_build_info gauge: always 1, with
// the version, revision, modified and goversion labels (the convention of
// go_build_info and prometheus_build_info, for joining on version).
func buildInfoCollector(v buildVersion) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: buildInfoMetric,
		Help: "Build information of the eventbus binary; always 1.",
		ConstLabels: prometheus.Labels{
			"version":   v.Version,
			"revision":  v.Revision,
			"modified":  fmt.Sprint(v.Modified),
			"goversion": v.GoVersion,
		},
	})
	g.Set(1)
	return g
}

func newVersionCmd(*globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, VCS revision and Go version of this binary",
		Long: `Print the module version, the VCS revision and whether the working tree
was modified when the binary was built (from runtime/debug.BuildInfo), and the
Go version. 'eventbus --version' prints the same line.

A binary built from a checkout says "(devel)" unless it was built from a
tagged commit; a build without VCS information (no .git in a Docker build
context) says revision "unknown" unless given -ldflags
"-X main.version=... -X main.revision=..." (see docs/deploy.md).`,
		Example: `  eventbus version
  eventbus version --json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			v := readBuildVersion()
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				return enc.Encode(v)
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), v.String())
			return err
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the fields as one JSON object")
	return cmd
}
