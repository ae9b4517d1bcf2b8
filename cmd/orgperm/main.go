// Command orgperm asks and administers an orgperm model from a shell,
// against the database named by DATABASE_URL.
//
//	go install github.com/orgperm/orgperm/cmd/orgperm@latest
//
//	orgperm migrate up|down|status       the embedded schema migrations
//	orgperm check ORG USER CODENAME      allow or deny, as the Go API answers
//	orgperm explain ORG USER CODENAME    the answer and its reason
//	orgperm members ORG                  the org's members, status, window, roles
//	orgperm orgs USER                    the user's organizations (org switcher)
//	orgperm roles ORG                    the roles offered in ORG, with codenames
//	orgperm who ORG CODENAME             who holds CODENAME in ORG now
//	orgperm grant ORG USER ROLE          assign a role (by name) to a member
//	orgperm revoke ORG USER ROLE         take the role away
//	orgperm evict all|org ORG|member ORG USER|user USER
//	                                     evict a scope on every instance
//	orgperm audit org ORG|member ORG USER|actor ACTOR
//	                                     the audit trail, newest first
//	orgperm doctor                       schema version, triggers, listeners,
//	                                     transport, relay queue and leader
//
// Every command prints a human-readable table; --json prints one JSON
// document instead, for scripts. Flags may come before or after the
// arguments. Times are RFC 3339; a check without --at is evaluated at the
// database's time.
//
// Exit codes: 0 allowed / ok, 1 denied (check, explain) or a problem found
// (doctor), 2 usage, 3 error (database, bad input).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Exit codes.
const (
	exitOK    = 0
	exitDeny  = 1
	exitUsage = 2
	exitError = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// usageError is an error of the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// denied is returned by a command whose answer is "no": exit code 1, with
// the output already printed.
var errDenied = errors.New("denied")

const usage = `usage: orgperm [--json] COMMAND [ARGS]

  migrate up|down|status               the embedded schema migrations
  check ORG USER CODENAME [--at T]     allow (exit 0) or deny (exit 1)
  explain ORG USER CODENAME [--at T]   the answer and its reason
  members ORG [--status S] [--role NAME] [--at T] [--limit N] [--cursor C]
  orgs USER [--at T]                   the user's organizations
  roles ORG                            the roles offered in ORG
  who ORG CODENAME [--at T] [--limit N] [--cursor C]
  grant ORG USER ROLE [--until T] [--actor A]
  revoke ORG USER ROLE [--actor A]
  evict all | org ORG | member ORG USER | user USER
  audit org ORG | member ORG USER | actor ACTOR [--limit N] [--cursor C]
  doctor                               what an operator checks first

The database is DATABASE_URL. Every command takes --json.
Exit codes: 0 ok/allow, 1 deny/problem, 2 usage, 3 error.
`

// cli is one run of the command.
type cli struct {
	out, errOut io.Writer
	getenv      func(string) string
	json        bool
	pool        *pgxpool.Pool
	url         string
}

// command is one subcommand: its flags are declared on fs by setup, and
// run gets the positional arguments.
type command struct {
	args  string // the positional arguments, for usage
	nargs func(n int) bool
	setup func(c *cli, fs *flag.FlagSet) func(ctx context.Context, args []string) error
	nodb  bool // does not connect (none yet)
}

func exactly(n int) func(int) bool { return func(m int) bool { return m == n } }

var commands map[string]command

func init() {
	commands = map[string]command{
		"migrate": {"up|down|status", exactly(1), setupMigrate, false},
		"check":   {"ORG USER CODENAME", exactly(3), setupCheck(false), false},
		"explain": {"ORG USER CODENAME", exactly(3), setupCheck(true), false},
		"members": {"ORG", exactly(1), setupMembers, false},
		"orgs":    {"USER", exactly(1), setupOrgs, false},
		"roles":   {"ORG", exactly(1), setupRoles, false},
		"who":     {"ORG CODENAME", exactly(2), setupWho, false},
		"grant":   {"ORG USER ROLE", exactly(3), setupGrant(true), false},
		"revoke":  {"ORG USER ROLE", exactly(3), setupGrant(false), false},
		"evict":   {"all | org ORG | member ORG USER | user USER", func(n int) bool { return n >= 1 && n <= 3 }, setupEvict, false},
		"audit":   {"org ORG | member ORG USER | actor ACTOR", func(n int) bool { return n == 2 || n == 3 }, setupAudit, false},
		"doctor":  {"", exactly(0), setupDoctor, false},
	}
}

// run runs the command line args and returns the exit code.
func run(ctx context.Context, args []string, out, errOut io.Writer, getenv func(string) string) int {
	c := &cli{out: out, errOut: errOut, getenv: getenv}
	err := c.run(ctx, args)
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errDenied):
		return exitDeny
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(errOut, usage)
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(errOut, "orgperm: %v\n\n%s", err, usage)
		return exitUsage
	default:
		if c.json {
			c.print(map[string]string{"error": err.Error()}, nil)
		}
		fmt.Fprintf(errOut, "orgperm: %v\n", err)
		return exitError
	}
}

func (c *cli) run(ctx context.Context, args []string) error {
	// Global flags before the command.
	global := flag.NewFlagSet("orgperm", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	global.BoolVar(&c.json, "json", false, "print JSON")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	if global.NArg() == 0 {
		return usagef("no command")
	}
	name, rest := global.Arg(0), global.Args()[1:]
	if name == "help" {
		return flag.ErrHelp
	}
	cmd, ok := commands[name]
	if !ok {
		return usagef("unknown command %q", name)
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&c.json, "json", c.json, "print JSON")
	runCmd := cmd.setup(c, fs)
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%s: %v", name, err)
	}
	if !cmd.nargs(len(pos)) {
		return usagef("%s: want %s, got %d argument(s)", name, strings.TrimSpace("orgperm "+name+" "+cmd.args), len(pos))
	}
	if !cmd.nodb {
		c.url = c.getenv("DATABASE_URL")
		if c.url == "" {
			return usagef("DATABASE_URL is not set")
		}
		cfg, err := pgxpool.ParseConfig(c.url)
		if err != nil {
			return usagef("DATABASE_URL: %v", err)
		}
		cfg.MaxConns = 2
		cfg.ConnConfig.RuntimeParams["application_name"] = "orgperm_cli"
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		defer pool.Close()
		c.pool = pool
	}
	return runCmd(ctx, pos)
}

// parseInterspersed parses fs from args, allowing flags after positional
// arguments; "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// timeFlag is a flag holding an RFC 3339 instant; zero when unset.
type timeFlag struct{ t time.Time }

func (f *timeFlag) String() string {
	if f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339Nano)
}

func (f *timeFlag) Set(s string) error {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("want an RFC 3339 time (2030-01-02T15:04:05Z): %q", s)
	}
	f.t = t
	return nil
}
