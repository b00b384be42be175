package keyless

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/google/go-cmp/cmp"
)

// scriptedCredential fails with the errors in errs, in turn, then succeeds.
type scriptedCredential struct {
	errs  []error
	calls int
}

func (s *scriptedCredential) GetToken(context.Context, policy.TokenRequestOptions) (
	azcore.AccessToken, error) {
	s.calls++
	if len(s.errs) > 0 {
		err := s.errs[0]
		s.errs = s.errs[1:]
		return azcore.AccessToken{}, err
	}
	return azcore.AccessToken{Token: "t", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func testSource(name string, cred azcore.TokenCredential) *source {
	return &source{name: name, cred: cred, fix: func(error, []string) string {
		return "fix " + name
	}}
}

func TestChainTriesSourcesInOrderThenPinsTheFirstThatWorks(t *testing.T) {
	errA := errors.New("a is down")
	a := &scriptedCredential{errs: []error{errA, errA, errA}}
	b := &scriptedCredential{}
	skipped := &SourceError{Source: "S", Skipped: true, Err: errors.New("not here"),
		Fix: "fix S"}
	c := &chain{entries: []entry{{skip: skipped}, {src: testSource("A", a)},
		{src: testSource("B", b)}}, sources: 2}
	opts := policy.TokenRequestOptions{Scopes: []string{DefaultScope}}
	ctx := context.Background()

	if _, err := c.GetToken(ctx, opts); err != nil {
		t.Fatalf("first call: %v", err)
	}
	if _, err := c.GetToken(ctx, opts); err != nil {
		t.Fatalf("second call: %v", err)
	}
	if a.calls != 1 || b.calls != 2 {
		t.Errorf("calls: A %d, B %d; want A 1 (tried once), B 2 (pinned)", a.calls, b.calls)
	}
	if got, want := c.String(), "keyless credential chain: A, B; in use: B"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestChainReportsEverySourceWhenAllFail(t *testing.T) {
	errA, errB := errors.New("a is down"), errors.New("b is down")
	skipped := SourceError{Source: "S", Skipped: true, Err: errors.New("not here"),
		Fix: "fix S"}
	c := &chain{entries: []entry{
		{src: testSource("A", &scriptedCredential{errs: []error{errA}})},
		{skip: &skipped},
		{src: testSource("B", &scriptedCredential{errs: []error{errB}})},
	}, sources: 2}
	_, err := c.GetToken(context.Background(),
		policy.TokenRequestOptions{Scopes: []string{DefaultScope}})

	var ce *CredentialError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *CredentialError", err, err)
	}
	want := []SourceError{
		{Source: "A", Err: errA, Fix: "fix A"},
		skipped,
		{Source: "B", Err: errB, Fix: "fix B"},
	}
	if diff := cmp.Diff(want, ce.Sources, cmp.Comparer(func(x, y error) bool {
		return x.Error() == y.Error()
	})); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}
	if !errors.Is(err, errB) {
		t.Error("errors.Is does not find a source's error")
	}
	wantMsg := "keyless: no credential source produced a token" +
		"\n\tA failed: a is down\n\t\tfix: fix A" +
		"\n\tS skipped: not here\n\t\tfix: fix S" +
		"\n\tB failed: b is down\n\t\tfix: fix B"
	if got := err.Error(); got != wantMsg {
		t.Errorf("Error() =\n%s\nwant\n%s", got, wantMsg)
	}
}

// blockingCredential waits for the end of its context.
type blockingCredential struct{}

func (blockingCredential) GetToken(ctx context.Context, _ policy.TokenRequestOptions) (
	azcore.AccessToken, error) {
	<-ctx.Done()
	return azcore.AccessToken{}, errors.New("signal: killed")
}

func TestCLICredentialTimeoutNamesToolAndFix(t *testing.T) {
	b := chainBuilder{opts: &CredentialOptions{}, getenv: func(string) string { return "" }}
	if err := b.addAzd(); err != nil {
		t.Fatal(err)
	}
	s := b.chain.entries[0].src
	s.cred = &cliCredential{cred: blockingCredential{}, tool: "azd", timeout: 10 * time.Millisecond}

	_, err := b.chain.GetToken(context.Background(),
		policy.TokenRequestOptions{Scopes: []string{DefaultScope}})
	var ce *CredentialError
	if !errors.As(err, &ce) || len(ce.Sources) != 1 {
		t.Fatalf("error = %v, want a *CredentialError with one source", err)
	}
	got := ce.Sources[0]
	if !errors.Is(got.Err, context.DeadlineExceeded) ||
		!strings.HasPrefix(got.Err.Error(), "azd did not finish within 10ms: ") {
		t.Errorf("Err = %v, want azd's timeout", got.Err)
	}
	wantFix := "run azd auth token --output json --scope " + DefaultScope +
		" to see why it does not answer"
	if got.Fix != wantFix {
		t.Errorf("Fix = %q, want %q", got.Fix, wantFix)
	}
}

func TestCLICredentialKeepsCallerCancellation(t *testing.T) {
	c := &cliCredential{cred: blockingCredential{}, tool: "azd", timeout: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err := c.GetToken(ctx, policy.TokenRequestOptions{})
	if errors.As(err, new(*cliTimeoutError)) {
		t.Errorf("error = %v: the caller's deadline was reported as azd's timeout", err)
	}
}

func TestCredentialErrorTidiesSourceMessages(t *testing.T) {
	err := &CredentialError{Sources: []SourceError{{
		Source: "ManagedIdentityCredential",
		Err: errors.New("ManagedIdentityCredential authentication failed. \n" +
			"GET http://127.0.0.1/msi/token\n\nRESPONSE 400  \n"),
		Fix: "attach it",
	}}}
	want := "keyless: no credential source produced a token" +
		"\n\tManagedIdentityCredential failed: ManagedIdentityCredential authentication failed." +
		"\n\t\tGET http://127.0.0.1/msi/token" +
		"\n\t\tRESPONSE 400" +
		"\n\t\tfix: attach it"
	if got := err.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
	prefixed := &CredentialError{Sources: []SourceError{{Source: "A", Err: errors.New("A: down")}}}
	if got, want := prefixed.Error(), "keyless: no credential source produced a token"+
		"\n\tA failed: down"; got != want {
		t.Errorf("Error() = %q, want %q (the source named once)", got, want)
	}
}
