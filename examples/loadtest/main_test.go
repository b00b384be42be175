package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aoaiblocks/securechat/aoaitest"
)

// TestMain lets the test binary be the harness's child: run with worldEnv
// set, it is the world (stand-ins and clients) instead of the tests.
func TestMain(m *testing.M) {
	if cfg := os.Getenv(worldEnv); cfg != "" {
		os.Exit(worldMain(cfg, os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// runBriefly runs the harness with tiny bounds, this test binary as its
// child.
func runBriefly(t *testing.T, cfg config) *report {
	t.Helper()
	aoaitest.Guard(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	setenv := func(k, v string) error {
		t.Setenv(k, v)
		return nil
	}
	rep, err := run(context.Background(), cfg, exe, setenv)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	var out strings.Builder
	if err := rep.write(&out, false); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", out.String())
	return rep
}

func TestHarnessDrivesConcurrentStreamsAndReportsTargets(t *testing.T) {
	cfg := config{Clients: 8, Requests: 16, Duration: time.Minute, Deltas: 20,
		Delay: 20 * time.Millisecond, FirstDelay: 20 * time.Millisecond}
	rep := runBriefly(t, cfg)

	ch := rep.Chats
	if ch.Sent != cfg.Requests || ch.OK != cfg.Requests || len(ch.Errors) != 0 {
		t.Errorf("chats: %d sent, %d ok, errors %v; want %d ok", ch.Sent, ch.OK, ch.Errors,
			cfg.Requests)
	}
	if !rep.AllOpen || rep.OpenPeak != cfg.Clients {
		t.Errorf("all open measured %v, peak %d; want all %d open at once", rep.AllOpen,
			rep.OpenPeak, cfg.Clients)
	}
	if rep.HeapPerStream <= 0 || rep.GoroutinesOpen <= rep.GoroutinesBase {
		t.Errorf("with all streams open: heap per stream %.0f, goroutines %d (base %d); "+
			"want both above the baseline", rep.HeapPerStream, rep.GoroutinesOpen,
			rep.GoroutinesBase)
	}
	if rep.GoroutinesAfter > rep.GoroutinesBase {
		t.Errorf("goroutines: %d after, %d before", rep.GoroutinesAfter, rep.GoroutinesBase)
	}
	if ch.TTFB.P50 <= 0 || ch.TTFB.P50 > ch.TTLB.P50 || ch.TTLB.P99 > ch.TTLB.Max {
		t.Errorf("latencies out of order: ttfb %+v, ttlb %+v", ch.TTFB, ch.TTLB)
	}
	if ch.IdentityCalls != 1 {
		t.Errorf("%d token requests to the identity endpoint, want 1", ch.IdentityCalls)
	}
	if rep.RSSPeakKiB <= 0 || rep.ChatsPerSec <= 0 {
		t.Errorf("peak RSS %d KiB, %.1f chats/s; want both measured", rep.RSSPeakKiB,
			rep.ChatsPerSec)
	}
	if len(rep.Targets) != 4 {
		t.Errorf("%d targets, want 4", len(rep.Targets))
	}
}

func TestHarnessStopsAtItsDuration(t *testing.T) {
	cfg := config{Clients: 2, Requests: 1000, Duration: 1500 * time.Millisecond,
		Deltas: 10, Delay: 20 * time.Millisecond}
	start := time.Now()
	rep := runBriefly(t, cfg)

	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the run took %v with -duration %v", took, cfg.Duration)
	}
	if rep.Chats.Sent == 0 || rep.Chats.Sent >= cfg.Requests {
		t.Errorf("%d chats sent; want some, and fewer than %d", rep.Chats.Sent, cfg.Requests)
	}
	if rep.TargetsHold {
		t.Error("targets hold although the run was cut short")
	}
}

func TestConfigRejectsUnboundedRuns(t *testing.T) {
	good := config{Clients: 1, Requests: 1, Duration: time.Second, Deltas: 1}
	if err := good.validate(); err != nil {
		t.Fatalf("validate(%+v): %v", good, err)
	}
	for _, c := range []config{
		{Clients: 0, Requests: 1, Duration: time.Second, Deltas: 1},
		{Clients: 1, Requests: 0, Duration: time.Second, Deltas: 1},
		{Clients: 1, Requests: 1, Duration: 0, Deltas: 1},
		{Clients: 1, Requests: 1, Duration: 2 * time.Hour, Deltas: 1},
		{Clients: 1, Requests: 1, Duration: time.Second, Deltas: 0},
		{Clients: 1, Requests: 1, Duration: time.Second, Deltas: 1, Delay: -1},
	} {
		if err := c.validate(); err == nil {
			t.Errorf("validate(%+v) = nil, want an error", c)
		}
	}
}

func TestLoopbackChecksRefuseOtherHosts(t *testing.T) {
	for _, u := range []string{"http://10.0.0.1:80", "http://example.com:80",
		"https://127.0.0.1:80", "http://169.254.169.254:80"} {
		if checkLoopbackURL(u) == nil {
			t.Errorf("checkLoopbackURL(%q) = nil, want an error", u)
		}
	}
	if err := checkLoopbackURL("http://127.0.0.1:8080"); err != nil {
		t.Errorf("checkLoopbackURL(loopback): %v", err)
	}
	if _, err := loopbackDial(context.Background(), "tcp", "192.0.2.1:443"); err == nil {
		t.Error("loopbackDial dialed a non-loopback address")
	}
}
