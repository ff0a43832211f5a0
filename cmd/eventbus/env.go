package main

import (
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envPrefix starts the name of every environment variable a flag of serve
// can be read from: --allow-origin is EVENTBUS_ALLOW_ORIGIN.
const envPrefix = "EVENTBUS_"

// envName is the environment variable of the flag called name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// envFlags says in the help of each of cmd's own flags which EVENTBUS_*
// variable it is read from: "[$EVENTBUS_LISTEN]". The inherited flags
// (--redis-url, --prefix, --service) are the root's, shared with every
// command: the command's long help names their variables instead. The
// values are applied by applyEnv, before the command runs.
func envFlags(cmd *cobra.Command) {
	cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" {
			f.Usage += " [$" + envName(f.Name) + "]"
		}
	})
}

// applyEnv sets every flag of cmd that was not given on the command line
// from its EVENTBUS_* variable, when that is set and not empty: the flag
// wins over the variable, the variable over the default. A slice flag takes
// a comma-separated list. It returns a usage error naming the variable when
// a value is not valid for its flag.
func applyEnv(cmd *cobra.Command) error {
	var errs []string
	visit := func(f *pflag.Flag) {
		if f.Name == "help" || f.Changed {
			return
		}
		name := envName(f.Name)
		v, ok := os.LookupEnv(name)
		if !ok || strings.TrimSpace(v) == "" {
			return
		}
		if err := cmd.Flags().Set(f.Name, strings.TrimSpace(v)); err != nil {
			errs = append(errs, name+"="+quoteEnv(v)+": "+err.Error()+" (the --"+f.Name+" flag)")
		}
	}
	cmd.Flags().VisitAll(visit)
	if len(errs) > 0 {
		sort.Strings(errs)
		return usagef("invalid environment: %s", strings.Join(errs, "; "))
	}
	return nil
}

// quoteEnv quotes an environment value for an error message, shortened so
// that a long one does not fill the line.
func quoteEnv(v string) string {
	if len(v) > 64 {
		v = v[:64] + "…"
	}
	return `"` + v + `"`
}
