package aoaitest_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/google/go-cmp/cmp"

	"github.com/aoaiblocks/securechat/aoaitest"
)

// newIdentity starts an Identity for t, its variables set, and returns it with the
// guarded client.
func newIdentity(t *testing.T) (*aoaitest.Identity, *http.Client) {
	t.Helper()
	hc := aoaitest.Guard(t)
	id := aoaitest.NewIdentity()
	t.Cleanup(id.Close)
	id.Setenv(t)
	return id, hc
}

// managedCredential returns azidentity's ManagedIdentityCredential on the guarded
// transport, for the user-assigned identity clientID ("" for system-assigned).
func managedCredential(t *testing.T, hc *http.Client, clientID string) azcore.TokenCredential {
	t.Helper()
	opts := &azidentity.ManagedIdentityCredentialOptions{
		ClientOptions: azcore.ClientOptions{Transport: hc},
	}
	if clientID != "" {
		opts.ID = azidentity.ClientID(clientID)
	}
	cred, err := azidentity.NewManagedIdentityCredential(opts)
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

func getToken(cred azcore.TokenCredential, scope string) (azcore.AccessToken, error) {
	return cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{scope}})
}

func TestManagedIdentityCredentialGetsUserAssignedToken(t *testing.T) {
	id, hc := newIdentity(t)
	cred := managedCredential(t, hc, id.ClientID)

	tok, err := getToken(cred, aoaitest.Scope)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := aoaitest.VerifyToken(tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{claims.ObjectID, claims.AppID, claims.TenantID, claims.IDType}
	want := []string{id.PrincipalID, id.ClientID, id.TenantID, "app"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("oid, appid, tid, idtyp (-want +got):\n%s", diff)
	}
	if d := time.Until(tok.ExpiresOn); d < 59*time.Minute || d > time.Hour {
		t.Errorf("token expires in %v, want about an hour", d)
	}
	if id.Calls() != 1 {
		t.Errorf("Calls() = %d, want 1", id.Calls())
	}
}

func TestManagedIdentityCredentialGetsSystemAssignedToken(t *testing.T) {
	id, hc := newIdentity(t)
	// MSAL caches system-assigned tokens process-wide unless they expire within five
	// minutes; a short lifetime makes this Identity answer every call.
	id.SetLifetime(4 * time.Minute)
	cred := managedCredential(t, hc, "")

	tok, err := getToken(cred, aoaitest.Scope)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := aoaitest.VerifyToken(tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	if claims.ObjectID != id.SystemPrincipalID || claims.AppID != id.SystemClientID {
		t.Errorf("oid, appid = %s, %s; want the system-assigned %s, %s",
			claims.ObjectID, claims.AppID, id.SystemPrincipalID, id.SystemClientID)
	}
	if id.Calls() != 1 {
		t.Errorf("Calls() = %d, want 1", id.Calls())
	}
}

func TestManagedIdentityCredentialRetriesFailedTokenRequest(t *testing.T) {
	id, hc := newIdentity(t)
	id.FailNext(1, http.StatusServiceUnavailable)
	cred := managedCredential(t, hc, id.ClientID)

	if _, err := getToken(cred, aoaitest.Scope); err != nil {
		t.Fatalf("GetToken after one 503: %v", err)
	}
	if id.Calls() != 2 {
		t.Errorf("Calls() = %d, want 2 (one failed, one retried)", id.Calls())
	}
}

func TestManagedIdentityCredentialFailsForUnknownClientID(t *testing.T) {
	id, hc := newIdentity(t)
	cred := managedCredential(t, hc, "00000000-0000-0000-0000-000000000001")

	_, err := getToken(cred, aoaitest.Scope)
	var authErr *azidentity.AuthenticationFailedError
	if !errors.As(err, &authErr) || authErr.RawResponse.StatusCode != http.StatusBadRequest {
		t.Fatalf("GetToken = %v, want an AuthenticationFailedError with status 400", err)
	}
	if id.Calls() != 1 {
		t.Errorf("Calls() = %d, want 1", id.Calls())
	}
}

func TestIdentityAnswersTheAppServiceProtocol(t *testing.T) {
	id, hc := newIdentity(t)
	get := func(query, secret string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, id.URL+"?"+query, nil)
		if secret != "" {
			req.Header.Set("X-IDENTITY-HEADER", secret)
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body map[string]any
		json.NewDecoder(res.Body).Decode(&body)
		return res.StatusCode, body
	}
	good := url.Values{"api-version": {"2019-08-01"}, "resource": {aoaitest.Audience},
		"client_id": {id.ClientID}}

	status, body := get(good.Encode(), id.Secret)
	if status != http.StatusOK {
		t.Fatalf("status %d, body %v", status, body)
	}
	exp, isString := body["expires_on"].(string)
	if !isString || exp == "" || strings.Trim(exp, "0123456789") != "" {
		t.Errorf("expires_on = %#v, want Unix seconds as a string", body["expires_on"])
	}
	delete(body, "access_token")
	delete(body, "expires_on")
	want := map[string]any{
		"resource": aoaitest.Audience, "token_type": "Bearer", "client_id": id.ClientID,
	}
	if diff := cmp.Diff(want, body); diff != "" {
		t.Errorf("token response (-want +got):\n%s", diff)
	}

	bad := func(k, v string) string {
		q := url.Values{}
		for k, vs := range good {
			q[k] = vs
		}
		q.Set(k, v)
		return q.Encode()
	}
	refusals := []struct {
		name, query, secret string
		want                int
	}{
		{"no secret", good.Encode(), "", http.StatusUnauthorized},
		{"wrong secret", good.Encode(), "guess", http.StatusUnauthorized},
		{"old api-version", bad("api-version", "2017-09-01"), id.Secret, http.StatusBadRequest},
		{"no resource", bad("resource", ""), id.Secret, http.StatusBadRequest},
		{"unknown client id", bad("client_id", "x"), id.Secret, http.StatusBadRequest},
	}
	for _, tt := range refusals {
		if status, _ := get(tt.query, tt.secret); status != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, status, tt.want)
		}
	}
}
