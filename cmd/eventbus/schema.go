package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/shared-infra/eventbus/bus"
)

func newSchemaCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schema",
		Short: "Store, show, list and check the JSON Schemas of event types",
		Long: `Manage the bus's schema registry: one JSON Schema (draft 2020-12) per event
type, versioned, stored in Redis under the bus's prefix. Every publisher on
the prefix validates events against the latest version of their type and
names it in the dataschema attribute; every router validates what it receives
against the version an event names.

put stores FILE (or stdin with -) as the next version. It first validates
every event of the type still retained in its stream against the new schema
and refuses, naming the first rejected entry ids, unless --force. Putting the
schema that is already the latest stores nothing. check does the same
validation and stores nothing.`,
		Example: `  eventbus schema put photo.uploaded schemas/photo.uploaded.json
  eventbus schema check photo.uploaded new.json
  eventbus schema get photo.uploaded
  eventbus schema get photo.uploaded --version 1
  eventbus schema list`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q — its commands are put, get, list and check (see 'eventbus schema --help')", args[0], cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newSchemaPutCmd(g, false), newSchemaPutCmd(g, true), newSchemaGetCmd(g), newSchemaListCmd(g))
	return cmd
}

// readSchemaFile reads FILE, or stdin for "-".
func (g *globals) readSchemaFile(name string) ([]byte, error) {
	if name == "-" {
		b, err := io.ReadAll(g.io.in)
		if err != nil {
			return nil, &failure{err: fmt.Errorf("read the schema from stdin: %w", err)}
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, usagef("cannot read schema file: %v", err)
	}
	return b, nil
}

// newSchemaPutCmd is "schema put", or "schema check" when check is set.
func newSchemaPutCmd(g *globals, check bool) *cobra.Command {
	var force bool
	use, short := "put TYPE FILE", "Store FILE (- for stdin) as the next schema version of TYPE"
	if check {
		use, short = "check TYPE FILE", "Validate the retained events of TYPE against FILE, storing nothing"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  usageArgs(cobra.ExactArgs(2)),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			typ := args[0]
			if err := bus.ValidateType(typ); err != nil {
				return err
			}
			doc, err := g.readSchemaFile(args[1])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			b, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			if check {
				if err := b.Schemas().Check(ctx, typ, doc); err != nil {
					return schemaErr(g, "check schema of "+typ, err)
				}
				_, err := fmt.Fprintf(g.io.out, "ok: every retained %s event matches\n", typ)
				return err
			}
			var opts []bus.PutOption
			if force {
				opts = append(opts, bus.WithForce())
			}
			s, err := b.Schemas().Put(ctx, typ, doc, opts...)
			if err != nil {
				return schemaErr(g, "store schema of "+typ, err)
			}
			_, err = fmt.Fprintf(g.io.out, "%s version %d (%s)\n", s.Type, s.Version, s.URI)
			return err
		}),
	}
	if !check {
		cmd.Flags().BoolVar(&force, "force", false, "store the new version even if it rejects retained events")
	}
	return cmd
}

// schemaErr classifies a schema registry error: bad schemas and rejected
// events are the user's to fix (usage), Redis errors failures.
func schemaErr(g *globals, doing string, err error) error {
	for _, target := range []error{bus.ErrInvalidSchema, bus.ErrIncompatibleSchema, bus.ErrUnknownSchema, bus.ErrInvalidType} {
		if errors.Is(err, target) {
			return &usageError{err: err}
		}
	}
	return g.redisError(doing, err)
}

func newSchemaGetCmd(g *globals) *cobra.Command {
	var version int
	cmd := &cobra.Command{
		Use:   "get TYPE",
		Short: "Print the schema of TYPE (the latest version, or --version N)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if version < 0 {
				return usagef("invalid --version %d: versions count from 1 (0 or none means the latest)", version)
			}
			ctx := cmd.Context()
			b, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			s, err := b.Schemas().Get(ctx, args[0], version)
			if err != nil {
				return schemaErr(g, "read schema of "+args[0], err)
			}
			_, err = fmt.Fprintf(g.io.out, "%s\n", s.Document)
			return err
		}),
	}
	cmd.Flags().IntVar(&version, "version", 0, "the version to print (default the latest)")
	return cmd
}

func newSchemaListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List every type with a schema and its latest version",
		Args:  usageArgs(cobra.NoArgs),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			b, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			list, err := b.Schemas().List(ctx)
			if err != nil {
				return g.redisError("list schemas", err)
			}
			w := tabwriter.NewWriter(g.io.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TYPE\tVERSION\tDATASCHEMA")
			for _, s := range list {
				fmt.Fprintf(w, "%s\t%s\t%s\n", s.Type, strconv.Itoa(s.Version), s.URI)
			}
			return w.Flush()
		}),
	}
}
