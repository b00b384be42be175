// Command loadtest drives the example chat app with many concurrent streaming
// clients and reports what serving them cost: throughput, time to first and
// to last byte, the server's memory and goroutines.
//
//	go run ./examples/loadtest -clients 500 -requests 1000 -deltas 100 -delay 20ms
//
// It runs in two processes, both on loopback only:
//
//   - this one is the server: the example app (package app, its real
//     handler and middleware) behind an http.Server on 127.0.0.1, reaching
//     Azure OpenAI keylessly through the real credential chain and openai-go;
//   - a child, the same executable started again, is the world around it:
//     the aoaitest stand-ins for the managed identity endpoint and Azure
//     OpenAI (answering -deltas deltas, one every -delay), and the clients.
//
// So the memory, goroutines and RSS measured here are the server's alone,
// not those of the clients or of the stand-ins' TLS connections.
//
// The run is bounded: it sends at most -requests chats and stops after
// -duration, cancelling what is still in flight; -clients chats are in flight
// at a time. The heap per open stream is measured once, when all -clients
// streams have sent their first line and none has finished: the live heap
// then (after a collection) less the live heap before the load, divided by
// the streams. Goroutines are counted before the load and after it, once the
// clients have closed their connections; the idle connections to Azure
// OpenAI are closed before both counts, so a pooled connection is not taken
// for a leak.
//
// The report ends with the targets and whether each holds; the exit status
// is 1 when one does not, 2 when the run could not be made.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"
)

// worldEnv names the variable that makes the executable the child: it holds
// the child's configuration as JSON.
const worldEnv = "SECURECHAT_LOADTEST_WORLD"

// memProfile is the -memprofile flag: where to write the heap profile.
var memProfile string

// config is what a run does. The child gets it too.
type config struct {
	Clients    int           `json:"clients"`
	Requests   int           `json:"requests"`
	Duration   time.Duration `json:"duration"`
	Deltas     int           `json:"deltas"`
	Delay      time.Duration `json:"delay"`
	FirstDelay time.Duration `json:"first_delay"`
}

// Default bounds of a run, and the heap target per open stream.
const (
	defaultClients  = 500
	defaultDeltas   = 100
	defaultDelay    = 50 * time.Millisecond
	defaultDuration = 2 * time.Minute
	maxHeapPerOpen  = 64 << 10
)

func main() {
	if cfg := os.Getenv(worldEnv); cfg != "" {
		os.Exit(worldMain(cfg, os.Stdin, os.Stdout))
	}

	var cfg config
	flag.IntVar(&cfg.Clients, "clients", defaultClients, "chats in flight at a time")
	flag.IntVar(&cfg.Requests, "requests", 0, "chats in all (0: twice -clients)")
	flag.DurationVar(&cfg.Duration, "duration", defaultDuration,
		"stop after this long, cancelling chats in flight")
	flag.IntVar(&cfg.Deltas, "deltas", defaultDeltas, "deltas in each answer")
	flag.DurationVar(&cfg.Delay, "delay", defaultDelay, "delay before each delta")
	flag.DurationVar(&cfg.FirstDelay, "first-delay", -1,
		"delay before the answer starts (negative: -delay)")
	asJSON := flag.Bool("json", false, "print the report as JSON")
	flag.StringVar(&memProfile, "memprofile", "",
		"write the server's heap profile, taken with all streams open, to this file")
	flag.Parse()
	if memProfile != "" {
		runtime.MemProfileRate = 4096
	}
	if cfg.Requests == 0 {
		cfg.Requests = 2 * cfg.Clients
	}
	if cfg.FirstDelay < 0 {
		cfg.FirstDelay = cfg.Delay
	}

	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(2)
	}
	rep, err := run(context.Background(), cfg, exe, os.Setenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(2)
	}
	if err := rep.write(os.Stdout, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(2)
	}
	if !rep.TargetsHold {
		os.Exit(1)
	}
}

// validate checks the bounds of a run.
func (c config) validate() error {
	switch {
	case c.Clients < 1 || c.Clients > 10000:
		return fmt.Errorf("loadtest: -clients %d: want 1 to 10000", c.Clients)
	case c.Requests < 1 || c.Requests > 1000000:
		return fmt.Errorf("loadtest: -requests %d: want 1 to 1000000", c.Requests)
	case c.Duration <= 0 || c.Duration > time.Hour:
		return fmt.Errorf("loadtest: -duration %v: want more than 0, at most 1h", c.Duration)
	case c.Deltas < 1 || c.Deltas > 100000:
		return fmt.Errorf("loadtest: -deltas %d: want 1 to 100000", c.Deltas)
	case c.Delay < 0 || c.FirstDelay < 0:
		return fmt.Errorf("loadtest: negative delay")
	}
	return nil
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
