package keyless

import (
	"errors"
	"fmt"
	"strings"
)

// CredentialError reports that no credential source produced a token, or that the
// environment offers none. It lists every source the chain considered, in order, with why
// it failed or was skipped and what fixes it.
//
// The chain returned by [NewCredential] returns a *CredentialError from NewCredential
// (nothing to try) and from GetToken (every source tried failed). The token cache behind
// [NewTokenProvider] and [NewClient] turns the failures of any other credential into a
// *CredentialError too, so callers, including code that only sees the error an openai-go
// call returns, can test for it with [errors.As] and answer "credential unavailable".
type CredentialError struct {
	// Sources holds one entry per source considered, in chain order.
	Sources []SourceError
}

// SourceError is one source's part of a [CredentialError].
type SourceError struct {
	// Source is the credential's name as AZURE_TOKEN_CREDENTIALS spells it, such as
	// "ManagedIdentityCredential" or "AzureDeveloperCLICredential".
	Source string

	// Skipped is true when the source was not tried because the environment does not
	// offer it (for example, no managed identity endpoint on a laptop).
	Skipped bool

	// Err says why the source failed or was skipped. For a source that was tried it is
	// the source's own error, so errors.As reaches azidentity's error types.
	Err error

	// Fix is the action that most likely makes the source work, such as
	// "run: azd auth login".
	Fix string
}

// Error lists every source on its own line, each followed by its fix.
func (e *CredentialError) Error() string {
	var b strings.Builder
	b.WriteString("keyless: ")
	if e.allSkipped() {
		b.WriteString("no credential source is available in this environment")
	} else {
		b.WriteString("no credential source produced a token")
	}
	for _, s := range e.Sources {
		b.WriteString("\n\t")
		b.WriteString(s.Source)
		if s.Skipped {
			b.WriteString(" skipped: ")
		} else {
			b.WriteString(" failed: ")
		}
		if s.Err != nil {
			writeIndented(&b, strings.TrimPrefix(s.Err.Error(), s.Source+": "))
		}
		if s.Fix != "" {
			b.WriteString("\n\t\tfix: ")
			b.WriteString(s.Fix)
		}
	}
	return b.String()
}

// writeIndented writes msg, its continuation lines indented under the source's line and
// its blank lines and trailing spaces dropped (azidentity's errors hold both).
func writeIndented(b *strings.Builder, msg string) {
	first := true
	for line := range strings.Lines(msg) {
		line = strings.TrimRight(line, " \t\r\n")
		if line == "" {
			continue
		}
		if !first {
			b.WriteString("\n\t\t")
		}
		first = false
		b.WriteString(line)
	}
}

// Unwrap returns the error of every source, so errors.Is and errors.As look into them.
func (e *CredentialError) Unwrap() []error {
	errs := make([]error, 0, len(e.Sources))
	for _, s := range e.Sources {
		if s.Err != nil {
			errs = append(errs, s.Err)
		}
	}
	return errs
}

func (e *CredentialError) allSkipped() bool {
	for _, s := range e.Sources {
		if !s.Skipped {
			return false
		}
	}
	return true
}

// asCredentialError returns err unchanged when it already holds a *CredentialError;
// otherwise it wraps err as the failure of the single source named source.
func asCredentialError(source string, err error) error {
	if err == nil {
		return nil
	}
	var ce *CredentialError
	if errors.As(err, &ce) {
		return err
	}
	return &CredentialError{Sources: []SourceError{{
		Source: source,
		Err:    err,
		Fix:    "check the credential's configuration; its error above says what failed",
	}}}
}

// ConfigError reports every problem [LoadConfig] or [Config.Validate] found, one message
// per problem. Each message names the variable and how to get its value.
type ConfigError struct {
	Problems []string
}

// Error lists the problems, one per line.
func (e *ConfigError) Error() string {
	n := len(e.Problems)
	head := fmt.Sprintf("keyless: %d configuration problems:", n)
	if n == 1 {
		head = "keyless: 1 configuration problem:"
	}
	return head + "\n\t" + strings.Join(e.Problems, "\n\t")
}
