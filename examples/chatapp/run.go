package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/aoaiblocks/securechat/examples/chatapp/app"
	"github.com/aoaiblocks/securechat/keyless"
	"github.com/aoaiblocks/securechat/stream"
)

// Exit statuses of the command.
const (
	exitOK     = 0
	exitFailed = 1 // could not start or serve
	exitUsage  = 2 // bad flags, or no Azure configuration and no demo
)

// usage opens the -help text.
const usage = `chatapp serves securechat's chat page and AI Chat Protocol endpoints,
answering with Azure OpenAI through a keyless Microsoft Entra ID credential.

  chatapp -demo    try it with local stand-ins, no Azure needed
  chatapp          use the Azure OpenAI named by AZURE_OPENAI_ENDPOINT and
                   AZURE_OPENAI_CHAT_DEPLOYMENT (or the current azd environment)

Flags:
`

// settings are the command's flags after the environment filled their
// defaults.
type settings struct {
	demo            bool
	addr            string
	shutdownTimeout time.Duration
	requireSignIn   bool
	logLevel        slog.Level
	demoPace        time.Duration
	bodyTimeout     time.Duration // 0: no bound
	upstreamTimeout time.Duration // bound on a whole answer from Azure OpenAI
	idleTimeout     time.Duration // bound on the wait for the first or next delta
	maxRetries      int           // retries of an upstream request; 0: none
}

// parseSettings reads args, taking each flag's default from its environment
// variable. A flag given on the command line wins over the environment.
// production tells whether the process runs in Azure (see app.Production).
func parseSettings(args []string, getenv func(string) string, production bool,
	stderr io.Writer) (settings, error) {
	var s settings
	var errs []error
	env := func(name string) string { return strings.TrimSpace(getenv(name)) }
	envBool := func(name string) bool {
		return envValue(env, &errs, name, false, strconv.ParseBool, "a boolean (use 1 or 0)")
	}
	envDuration := func(name string, def time.Duration) time.Duration {
		return envValue(env, &errs, name, def, parseNonNegative(time.ParseDuration),
			"a duration such as 25s")
	}
	envInt := func(name string, def int) int {
		return envValue(env, &errs, name, def, parseNonNegative(strconv.Atoi),
			"a whole number such as 2")
	}

	demo := envBool("SECURECHAT_DEMO")
	defaultAddr := ":8080"
	if p := env("PORT"); p != "" {
		defaultAddr = ":" + p
	}
	level := slog.LevelInfo
	if v := env("SECURECHAT_LOG_LEVEL"); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			errs = append(errs, fmt.Errorf("SECURECHAT_LOG_LEVEL=%q: use debug, info, warn "+
				"or error", v))
		}
	}

	fset := flag.NewFlagSet("chatapp", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() {
		fmt.Fprint(stderr, usage)
		fset.PrintDefaults()
	}
	fset.BoolVar(&s.demo, "demo", demo,
		"answer with in-process stand-ins of Azure OpenAI and managed identity "+
			"(env SECURECHAT_DEMO=1); needs no Azure")
	fset.StringVar(&s.addr, "addr", "",
		"address to listen on (default :$PORT, :8080 without PORT; in demo mode "+
			"outside Azure, 127.0.0.1 and that port)")
	fset.DurationVar(&s.shutdownTimeout, "shutdown-timeout",
		envDuration("SECURECHAT_SHUTDOWN_TIMEOUT", app.DefaultShutdownTimeout),
		"after SIGTERM, how long answers in flight may take before they are cancelled "+
			"(env SECURECHAT_SHUTDOWN_TIMEOUT)")
	fset.BoolVar(&s.requireSignIn, "require-sign-in", envBool("SECURECHAT_REQUIRE_SIGN_IN"),
		"require Azure Container Apps built-in authentication's X-MS-CLIENT-PRINCIPAL "+
			"on every request but the health probes (env SECURECHAT_REQUIRE_SIGN_IN=1)")
	fset.DurationVar(&s.bodyTimeout, "body-timeout",
		envDuration("SECURECHAT_BODY_TIMEOUT", app.DefaultBodyTimeout),
		"how long a request's body may take to arrive before the request is answered "+
			"408; 0 means no bound (env SECURECHAT_BODY_TIMEOUT)")
	fset.DurationVar(&s.upstreamTimeout, "upstream-timeout",
		envDuration("SECURECHAT_UPSTREAM_TIMEOUT", stream.DefaultTimeout),
		"how long a whole answer from Azure OpenAI may take before it is answered 504 "+
			"upstream_timeout (env SECURECHAT_UPSTREAM_TIMEOUT)")
	fset.DurationVar(&s.idleTimeout, "idle-timeout",
		envDuration("SECURECHAT_IDLE_TIMEOUT", stream.DefaultIdleTimeout),
		"how long to wait for the first or next piece of an answer "+
			"(env SECURECHAT_IDLE_TIMEOUT)")
	fset.IntVar(&s.maxRetries, "max-retries",
		envInt("SECURECHAT_MAX_RETRIES", stream.DefaultMaxRetries),
		"retries of an Azure OpenAI request that failed before its answer began "+
			"(throttled, 5xx, cut); 0 means none (env SECURECHAT_MAX_RETRIES)")
	fset.TextVar(&s.logLevel, "log-level", level,
		"log level: debug, info, warn or error (env SECURECHAT_LOG_LEVEL)")
	fset.DurationVar(&s.demoPace, "demo-pace", envDuration("SECURECHAT_DEMO_PACE", 0),
		"demo mode: delay between the words of an answer (default "+
			app.DefaultDemoPace.String()+"; env SECURECHAT_DEMO_PACE)")
	if err := fset.Parse(args); err != nil {
		return s, err
	}
	if s.upstreamTimeout <= 0 || s.idleTimeout <= 0 {
		errs = append(errs, errors.New("-upstream-timeout and -idle-timeout must be positive"))
	}
	if s.maxRetries < 0 {
		errs = append(errs, errors.New("-max-retries must be 0 or more"))
	}
	if fset.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q", fset.Arg(0)))
	}

	if s.addr == "" {
		s.addr = defaultAddr
		if s.demo && !production {
			// A demo on a developer's machine serves that machine only. In a
			// container the platform's ingress must reach it.
			_, port, _ := net.SplitHostPort(defaultAddr)
			s.addr = net.JoinHostPort("127.0.0.1", port)
		}
	}
	return s, errors.Join(errs...)
}

// envValue returns the value of the variable name, read by parse, or def when
// the variable is not set. A value parse refuses is added to errs, saying it is
// not what (such as "a duration such as 25s"), and def is returned.
func envValue[T any](env func(string) string, errs *[]error, name string, def T,
	parse func(string) (T, error), what string) T {
	v := env(name)
	if v == "" {
		return def
	}
	x, err := parse(v)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("%s=%q is not %s", name, v, what))
		return def
	}
	return x
}

// parseNonNegative wraps parse to refuse negative values.
func parseNonNegative[T int | time.Duration](parse func(string) (T, error)) func(
	string) (T, error) {
	return func(v string) (T, error) {
		x, err := parse(v)
		if err == nil && x < 0 {
			err = errors.New("negative")
		}
		return x, err
	}
}

// run is the whole command. It returns the process's exit status.
func run(ctx context.Context, args []string, getenv func(string) string, web fs.FS,
	stderr io.Writer) int {
	production := app.Production(getenv)
	s, err := parseSettings(args, getenv, production, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "chatapp: %v\n", err)
		return exitUsage
	}
	log := app.NewLogger(stderr, production, s.logLevel)

	opts := app.Options{
		Web:           web,
		Logger:        log,
		RequireSignIn: s.requireSignIn,
		BodyTimeout:   s.bodyTimeout,
	}
	if s.bodyTimeout == 0 {
		opts.BodyTimeout = -1 // the flag's 0 is app's "no bound"
	}
	opts.Stream = &stream.Options{Timeout: s.upstreamTimeout, IdleTimeout: s.idleTimeout}
	opts.Azure = &stream.AzureOptions{MaxRetries: s.maxRetries}
	if s.maxRetries == 0 {
		opts.Azure.MaxRetries = -1 // the flag's 0 is stream's "no retries"
	}
	if s.demo {
		demo, err := app.StartDemo(s.demoPace)
		if err != nil {
			fmt.Fprintf(stderr, "chatapp: starting the demo stand-ins: %v\n", err)
			return exitFailed
		}
		defer demo.Close()
		if err := demo.SetProcessEnv(); err != nil {
			fmt.Fprintf(stderr, "chatapp: %v\n", err)
			return exitFailed
		}
		opts = demo.Options(opts)
	} else {
		cfg, err := keyless.LoadConfig(&keyless.ConfigOptions{Getenv: getenv, AzdEnv: true})
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			fmt.Fprintf(stderr, "chatapp: Azure OpenAI is not configured:\n%v\n\n"+
				"To try the app without Azure, run it with -demo.\n", err)
			return exitUsage
		}
		opts.Config = cfg
		opts.Getenv = getenv
	}

	a, err := app.New(opts)
	var credErr *keyless.CredentialError
	var cfgErr *app.ConfigError
	switch {
	case errors.As(err, &credErr):
		fmt.Fprintf(stderr, "chatapp: no credential source for Azure OpenAI:\n%v\n\n"+
			"To try the app without Azure, run it with -demo.\n", credErr)
		return exitUsage
	case errors.As(err, &cfgErr):
		fmt.Fprintf(stderr, "chatapp: the credential for Azure OpenAI cannot be built:\n"+
			"%v\n\nTo try the app without Azure, run it with -demo.\n", cfgErr.Err)
		return exitUsage
	case err != nil:
		fmt.Fprintf(stderr, "chatapp: %v\n", err)
		return exitFailed
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		fmt.Fprintf(stderr, "chatapp: %v\n", err)
		return exitFailed
	}

	url := app.URL(ln.Addr())
	if s.demo {
		fmt.Fprintf(stderr, "securechat: demo mode: answers are simulated by local stand-ins "+
			"of Azure OpenAI and managed identity; nothing leaves this machine.\n"+
			"securechat: open %s\n", url)
	} else {
		fmt.Fprintf(stderr, "securechat: listening on %s\n", url)
	}
	log.Info("listening", "addr", ln.Addr().String(), "demo", s.demo,
		"require_sign_in", s.requireSignIn, "production", production)
	go a.CheckCredential(ctx)

	err = app.Serve(ctx, ln, a, log, s.shutdownTimeout)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Error("serving failed", "err", err)
		return exitFailed
	}
	return exitOK
}
