package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newBenchCmd is a placeholder: the bench package has no runnable entry point
// yet (its benchmarks are go test benchmarks), so there is nothing to wire.
// TODO(bench): run bench's benchmark with a progress bar once it exports one.
func newBenchCmd(*globals) *cobra.Command {
	return &cobra.Command{
		Use:    "bench",
		Short:  "Benchmark the bus against this Redis (not available yet: run 'make bench')",
		Hidden: true,
		Args:   usageArgs(cobra.ArbitraryArgs),
		RunE: runE(func(*cobra.Command, []string) error {
			return errors.New("bench is not available yet — run 'make bench' (go test -bench ./bench/) for the benchmarks")
		}),
	}
}
