package main

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSettingsComeFromFlagsThenEnvironmentThenDefaults(t *testing.T) {
	def := settings{addr: ":8080", shutdownTimeout: 25 * time.Second, logLevel: slog.LevelInfo,
		bodyTimeout: 30 * time.Second, upstreamTimeout: 5 * time.Minute,
		idleTimeout: 90 * time.Second, maxRetries: 2}
	with := func(f func(*settings)) settings {
		s := def
		f(&s)
		return s
	}
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		production bool
		want       settings
	}{
		{"defaults", nil, nil, false, def},
		{"PORT", nil, map[string]string{"PORT": "9000"}, false,
			with(func(s *settings) { s.addr = ":9000" })},
		{"demo listens on loopback", []string{"-demo"}, nil, false,
			with(func(s *settings) { s.demo, s.addr = true, "127.0.0.1:8080" })},
		{"demo from the environment with PORT",
			nil, map[string]string{"SECURECHAT_DEMO": "1", "PORT": "9000"}, false,
			with(func(s *settings) { s.demo, s.addr = true, "127.0.0.1:9000" })},
		{"demo in Azure listens on every interface", []string{"-demo"}, nil, true,
			with(func(s *settings) { s.demo = true })},
		{"-addr wins", []string{"-demo", "-addr", "127.0.0.1:0"},
			map[string]string{"PORT": "9000"}, false,
			with(func(s *settings) { s.demo, s.addr = true, "127.0.0.1:0" })},
		{"flag wins over environment", []string{"-shutdown-timeout", "3s", "-demo=false"},
			map[string]string{"SECURECHAT_SHUTDOWN_TIMEOUT": "9s", "SECURECHAT_DEMO": "1"},
			false, with(func(s *settings) { s.shutdownTimeout = 3 * time.Second })},
		{"environment", nil, map[string]string{
			"SECURECHAT_SHUTDOWN_TIMEOUT": "9s",
			"SECURECHAT_REQUIRE_SIGN_IN":  "true",
			"SECURECHAT_LOG_LEVEL":        "debug",
			"SECURECHAT_DEMO_PACE":        "10ms",
			"SECURECHAT_BODY_TIMEOUT":     "1m",
		}, false, with(func(s *settings) {
			s.shutdownTimeout, s.requireSignIn = 9*time.Second, true
			s.logLevel, s.demoPace = slog.LevelDebug, 10*time.Millisecond
			s.bodyTimeout = time.Minute
		})},
		{"upstream bounds from the environment, retries from a flag",
			[]string{"-max-retries", "0"}, map[string]string{
				"SECURECHAT_UPSTREAM_TIMEOUT": "1m",
				"SECURECHAT_IDLE_TIMEOUT":     "20s",
				"SECURECHAT_MAX_RETRIES":      "5",
			}, false, with(func(s *settings) {
				s.upstreamTimeout, s.idleTimeout, s.maxRetries = time.Minute, 20*time.Second, 0
			})},
		{"-body-timeout 0 turns the bound off", []string{"-body-timeout", "0"},
			map[string]string{"SECURECHAT_BODY_TIMEOUT": "5s"}, false,
			with(func(s *settings) { s.bodyTimeout = 0 })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSettings(tt.args, func(k string) string { return tt.env[k] },
				tt.production, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(settings{})); diff != "" {
				t.Errorf("settings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBadSettingsAreRejected(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"unknown flag", []string{"-port", "1"}, nil},
		{"argument", []string{"serve"}, nil},
		{"bad duration", []string{"-shutdown-timeout", "soon"}, nil},
		{"bad boolean in the environment", nil, map[string]string{"SECURECHAT_DEMO": "yes"}},
		{"bad duration in the environment", nil,
			map[string]string{"SECURECHAT_SHUTDOWN_TIMEOUT": "25"}},
		{"bad body timeout in the environment", nil,
			map[string]string{"SECURECHAT_BODY_TIMEOUT": "-5s"}},
		{"zero idle timeout", []string{"-idle-timeout", "0"}, nil},
		{"negative retries", []string{"-max-retries", "-1"}, nil},
		{"bad retries in the environment", nil,
			map[string]string{"SECURECHAT_MAX_RETRIES": "many"}},
		{"bad level in the environment", nil,
			map[string]string{"SECURECHAT_LOG_LEVEL": "loud"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSettings(tt.args, func(k string) string { return tt.env[k] },
				false, io.Discard)
			if err == nil {
				t.Error("no error")
			}
		})
	}
}
