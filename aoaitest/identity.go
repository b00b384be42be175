package aoaitest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Identity is a managed identity endpoint speaking the protocol that App Service and
// Container Apps expose to a process through IDENTITY_ENDPOINT and IDENTITY_HEADER:
//
//	GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=R[&client_id=C]
//	X-IDENTITY-HEADER: $IDENTITY_HEADER
//
// It answers with a JSON token response (access_token, expires_on as a string of Unix
// seconds, resource, token_type, client_id). Like the real platform endpoint it listens
// on loopback and speaks plain HTTP.
//
// The host has two identities: a user-assigned one (ClientID, PrincipalID), chosen by
// client_id (or object_id), and a system-assigned one (SystemClientID,
// SystemPrincipalID), used when the request names none. Tokens are for the requested
// resource as audience; only those for [Audience] are accepted by [AzureOpenAI].
//
// MSAL Go, which azidentity's ManagedIdentityCredential uses, caches managed identity
// tokens process-wide, keyed by the identity (client id, or "system assigned") and the
// resource, and reuses one until five minutes before it expires. Each Identity has its
// own random ClientID, so user-assigned tokens never leak between Identity values; a
// system-assigned token minted by one Identity may be served from that cache to a later
// credential in the same process. Tests that count system-assigned calls should set a
// lifetime under five minutes, which MSAL never serves from its cache.
//
// The methods of Identity are safe for concurrent use.
type Identity struct {
	URL               string // IDENTITY_ENDPOINT value
	Secret            string // IDENTITY_HEADER value, checked against X-IDENTITY-HEADER
	ClientID          string // client id of the user-assigned identity
	PrincipalID       string // object id (oid) of the user-assigned identity
	SystemClientID    string // client id of the system-assigned identity
	SystemPrincipalID string // object id (oid) of the system-assigned identity
	TenantID          string // tenant of both identities

	srv *httptest.Server

	mu       sync.Mutex
	calls    int
	lifetime time.Duration
	failN    int
	failCode int
}

// NewIdentity starts an Identity on 127.0.0.1 with fresh random identities and a token
// lifetime of one hour. The caller must Close it.
func NewIdentity() *Identity {
	id := &Identity{
		Secret:            "aoaitest-" + newID(),
		ClientID:          newID(),
		PrincipalID:       newID(),
		SystemClientID:    newID(),
		SystemPrincipalID: newID(),
		TenantID:          DefaultTenantID,
		lifetime:          time.Hour,
	}
	id.srv = httptest.NewServer(http.HandlerFunc(id.serve))
	id.URL = id.srv.URL + "/msi/token"
	return id
}

// Close shuts the endpoint down and waits for outstanding requests.
func (id *Identity) Close() { id.srv.Close() }

// Calls reports how many token requests the endpoint has received, failed ones
// included.
func (id *Identity) Calls() int {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.calls
}

// SetLifetime sets the lifetime of the tokens issued from now on. A lifetime of zero
// or less issues tokens that have already expired.
func (id *Identity) SetLifetime(d time.Duration) {
	id.mu.Lock()
	defer id.mu.Unlock()
	id.lifetime = d
}

// FailNext makes the next n token requests fail with the HTTP status code status.
// The azcore pipeline retries 408, 429, 500, 502, 503 and 504 before giving up.
func (id *Identity) FailNext(n, status int) {
	id.mu.Lock()
	defer id.mu.Unlock()
	id.failN, id.failCode = n, status
}

// Env returns the variables a platform host sets for a process using the
// user-assigned identity: IDENTITY_ENDPOINT, IDENTITY_HEADER and AZURE_CLIENT_ID.
// Drop AZURE_CLIENT_ID to use the system-assigned identity. MSAL reads
// IDENTITY_ENDPOINT and IDENTITY_HEADER from the process environment, when the
// credential is created and on every token request, so a program (a demo) must
// os.Setenv them and keep them set; tests use Setenv.
func (id *Identity) Env() map[string]string {
	return map[string]string{
		"IDENTITY_ENDPOINT": id.URL,
		"IDENTITY_HEADER":   id.Secret,
		"AZURE_CLIENT_ID":   id.ClientID,
	}
}

// otherSources are the variables that would make MSAL pick another managed identity
// source than App Service, or change its choice.
var otherSources = []string{
	"MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT",
}

// Setenv sets Env in t's environment with t.Setenv and unsets the variables that
// would select another managed identity source (MSI_ENDPOINT, MSI_SECRET,
// IDENTITY_SERVER_THUMBPRINT, IMDS_ENDPOINT), so that azidentity's
// ManagedIdentityCredential created afterwards uses this endpoint. Like t.Setenv it
// cannot be used in parallel tests.
func (id *Identity) Setenv(t testing.TB) {
	t.Helper()
	for k, v := range id.Env() {
		t.Setenv(k, v)
	}
	for _, k := range otherSources {
		unsetenv(t, k)
	}
}

// unsetenv removes k from the environment for the rest of t; t.Setenv restores it.
func unsetenv(t testing.TB, k string) {
	t.Helper()
	t.Setenv(k, "")
	os.Unsetenv(k)
}

// Token mints a valid token for [Audience] naming the principal oid, valid for
// lifetime from now (a lifetime of zero or less gives an expired token). Use it to
// call [AzureOpenAI] without a credential, or to test expiry.
func (id *Identity) Token(oid string, lifetime time.Duration) string {
	appid := id.SystemClientID
	if oid == id.PrincipalID {
		appid = id.ClientID
	}
	return mint(signingKey, newClaims(Audience, oid, appid, id.TenantID, "app", lifetime))
}

// identityError is the body the endpoint answers a refused request with.
type identityError struct {
	StatusCode int    `json:"statusCode"`
	Message    string `json:"message"`
}

func (id *Identity) serve(w http.ResponseWriter, r *http.Request) {
	id.mu.Lock()
	id.calls++
	fail, code := id.failN > 0, id.failCode
	if fail {
		id.failN--
	}
	lifetime := id.lifetime
	id.mu.Unlock()

	q := r.URL.Query()
	switch {
	case fail:
		writeIdentityError(w, code, "failure injected by aoaitest")
		return
	case r.Method != http.MethodGet:
		writeIdentityError(w, http.StatusMethodNotAllowed, "only GET is supported")
		return
	case r.Header.Get("X-IDENTITY-HEADER") != id.Secret:
		writeIdentityError(w, http.StatusUnauthorized,
			"the X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER")
		return
	case q.Get("api-version") != "2019-08-01":
		writeIdentityError(w, http.StatusBadRequest,
			"api-version must be 2019-08-01, got "+strconv.Quote(q.Get("api-version")))
		return
	case q.Get("resource") == "":
		writeIdentityError(w, http.StatusBadRequest, "the resource parameter is required")
		return
	}

	clientID, oid := id.SystemClientID, id.SystemPrincipalID
	if c, o := q.Get("client_id"), q.Get("object_id"); c != "" || o != "" {
		if (c != "" && c != id.ClientID) || (o != "" && o != id.PrincipalID) {
			writeIdentityError(w, http.StatusBadRequest,
				"no user-assigned identity with that id is assigned to this resource")
			return
		}
		clientID, oid = id.ClientID, id.PrincipalID
	}
	if q.Get("mi_res_id") != "" {
		writeIdentityError(w, http.StatusBadRequest,
			"no user-assigned identity with that resource id is assigned to this resource")
		return
	}

	resource := q.Get("resource")
	c := newClaims(resource, oid, clientID, id.TenantID, "app", lifetime)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(map[string]string{
		"access_token": mint(signingKey, c),
		"expires_on":   strconv.FormatInt(c.Expires, 10),
		"resource":     resource,
		"token_type":   "Bearer",
		"client_id":    clientID,
	})
}

func writeIdentityError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(identityError{StatusCode: status, Message: msg})
}
