// Package cli is the operator command line, xrc: validate configs, pack,
// inspect and verify archives, report savings, verify replicas.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/config"
)

// ErrUsage marks a command line that could not be understood.
var ErrUsage = errors.New("usage")

// ErrIncomplete marks a check (xrc verify) that stopped before it compared
// everything: not a difference found, not a pass either.
var ErrIncomplete = errors.New("incomplete")

// Env is what the commands touch outside themselves.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Now            func() time.Time
}

const usage = `xrc: operate xrc, the compressing cross-region S3 replicator.

Commands:
  xrc config validate FILE|ssm:///name     check a config; prints every problem
  xrc archive pack DIR -o FILE [-level N] [-region R] [-dest REGION/BUCKET[/PREFIX]]
                                           build an archive from local files (keys = relative paths)
  xrc archive inspect FILE|s3://bucket/key [--json]
                                           summarise an archive's manifest
  xrc archive verify FILE|s3://bucket/key  check every member's size and SHA-256
  xrc savings -config C [-rule R] [-since 7d] [--json]
                                           what xrc moved and saved, per rule and content class
  xrc backfill -config C -rule R [-prefix P] [-since 7d|RFC3339] [-inventory s3://bucket/manifest.json]
               [-rate N/s] [-tags] [-dry-run] [-checkpoint FILE|ddb [-restart|-restart-if-changed]]
               [-concurrency 8] [-depth 2] [-queue-url URL] [-emf]
                                           enqueue the objects a rule's destinations lack or hold older
  xrc verify -config C -rule R [-prefix P] [-region X] [-report out.csv|out.json] [-hash-sources] [-tags]
             [-concurrency 32] [-list-concurrency 8]
                                           compare a rule's source with its destinations, object by object
  xrc trace -config C s3://source-bucket/key
                                           why an object is, or is not, at its destinations: what each holds,
                                           the archive that carried it, its delete, and what to do
  xrc version

s3:// locations use the usual AWS environment (AWS_REGION, AWS_ENDPOINT_URL_S3, ...);
-config FILE takes them from a config instead: the region whose staging bucket it is (or
-region NAME), and that region's endpoint.
`

// Run executes one command line (without the program name). Asked for
// help (-h, --help), a command prints its flags and succeeds.
func Run(ctx context.Context, args []string, env Env, version string) error {
	err := run(ctx, args, env, version)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// required names the flags of pairs (name, value) left empty, and
// refuses arguments fs did not take.
func required(fs *flag.FlagSet, usage string, pairs ...string) error {
	var missing []string
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			name := "-" + pairs[i]
			if name == "-config" {
				name += " (or XRC_CONFIG)"
			}
			missing = append(missing, name)
		}
	}
	switch {
	case len(missing) > 0:
		return fmt.Errorf("%w: %s required\n%s", ErrUsage, strings.Join(missing, " and "), usage)
	case fs.NArg() > 0:
		return fmt.Errorf("%w: unexpected %q\n%s", ErrUsage, fs.Arg(0), usage)
	}
	return nil
}

func run(ctx context.Context, args []string, env Env, version string) error {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return ErrUsage
	}
	switch cmd := strings.Join(args[:min(2, len(args))], " "); {
	case cmd == "config validate":
		return validate(ctx, args[2:], env)
	case cmd == "archive pack":
		return pack(args[2:], env)
	case cmd == "archive inspect":
		return inspect(ctx, args[2:], env)
	case cmd == "archive verify":
		return verify(ctx, args[2:], env)
	case args[0] == "savings":
		return savings(ctx, args[1:], env)
	case args[0] == "backfill":
		return backfillCmd(ctx, args[1:], env)
	case args[0] == "verify":
		return verifyRule(ctx, args[1:], env)
	case args[0] == "trace":
		return trace(ctx, args[1:], env)
	case args[0] == "version":
		fmt.Fprintf(env.Stdout, "xrc %s (zstd encoder: %s)\n", version, archive.NewWriter(archive.WriterOptions{}).Encoder())
		return nil
	case args[0] == "help" || args[0] == "-h" || args[0] == "--help":
		fmt.Fprint(env.Stdout, usage)
		return nil
	case (args[0] == "config" || args[0] == "archive") && (len(args) == 1 || isHelp(args[1])):
		// A group asked for help, or named alone: its commands.
		var lines []string
		for _, l := range strings.Split(usage, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "xrc "+args[0]+" ") {
				lines = append(lines, l)
			}
		}
		if len(args) == 1 {
			fmt.Fprintf(env.Stderr, "xrc %s: which command?\n%s\n", args[0], strings.Join(lines, "\n"))
			return ErrUsage
		}
		fmt.Fprintf(env.Stdout, "%s\n", strings.Join(lines, "\n"))
		return nil
	default:
		fmt.Fprintf(env.Stderr, "unknown command %q\n\n%s", strings.Join(args, " "), usage)
		return ErrUsage
	}
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool { return slices.Contains([]string{"-h", "-help", "--help", "help"}, arg) }

func validate(ctx context.Context, args []string, env Env) error {
	const usage = "xrc config validate FILE|ssm:///name"
	if len(args) == 1 && isHelp(args[0]) {
		fmt.Fprintln(env.Stdout, "usage: "+usage)
		return nil
	}
	if len(args) != 1 {
		return fmt.Errorf("%w: %s", ErrUsage, usage)
	}
	c, err := loadConfig(ctx, args[0], env)
	var es config.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			fmt.Fprintf(env.Stderr, "%s: %s\n", args[0], e)
		}
		return fmt.Errorf("%s: %d problem(s)", args[0], len(es))
	}
	if err != nil {
		return err
	}
	for _, w := range c.Warnings() {
		fmt.Fprintf(env.Stderr, "%s: warning: %s\n", args[0], w)
	}
	if !strings.HasPrefix(args[0], config.SSMScheme) {
		// A file, which the CDK app stores in SSM compacted: said here,
		// not first at synth.
		if raw, err := config.Read(ctx, args[0], nil); err == nil {
			if doc, err := config.Compacted(raw); err == nil && len(doc) > config.MaxParameter {
				fmt.Fprintf(env.Stderr, "%s: warning: %d bytes compacted, more than an SSM parameter holds (%d): the CDK app refuses it; a worker reads it only as a file\n",
					args[0], len(doc), config.MaxParameter)
			}
		}
	}
	fmt.Fprintf(env.Stdout, "%s: ok (%d regions, %d rules)\n", args[0], len(c.Settings.Regions), len(c.Rules))
	return nil
}

// splitPositional lets the one positional argument come before or after
// the flags of fs: a flag takes the next argument as its value unless it is
// a boolean flag (as the flag package decides) or carries "=value".
func splitPositional(fs *flag.FlagSet, args []string) (string, []string) {
	var pos string
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case strings.HasPrefix(a, "-"):
			rest = append(rest, a)
			if !strings.Contains(a, "=") && i+1 < len(args) && !isBoolFlag(fs, strings.TrimLeft(a, "-")) {
				rest = append(rest, args[i+1])
				i++
			}
		case pos == "":
			pos = a
		default:
			rest = append(rest, a)
		}
	}
	return pos, rest
}

// parseFlags parses args into fs. A flag it refuses is ErrUsage alone:
// the flag package has said what was wrong, and the usage, on fs's
// output (main prints a bare ErrUsage no second time).
func parseFlags(fs *flag.FlagSet, args []string) error {
	switch err := fs.Parse(args); {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		return err
	}
	return ErrUsage
}

// parseOne parses the flags splitPositional left, refusing a second
// positional argument: the flag package would stop there and drop it, and
// every flag after it ("verify a.tar.zst b.tar.zst" would check a alone).
func parseOne(fs *flag.FlagSet, rest []string) error {
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected %q: one argument at a time", ErrUsage, fs.Arg(0))
	}
	return nil
}

func isBoolFlag(fs *flag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}
