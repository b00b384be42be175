package aoaitest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Audience is the audience of tokens for Azure OpenAI (Cognitive Services), the one
// [AzureOpenAI] accepts.
const Audience = "https://cognitiveservices.azure.com"

// Scope is the scope a client asks for to call Azure OpenAI.
const Scope = Audience + "/.default"

// signingKey signs every token the stand-ins of this process mint. The azd stand-in,
// a child process, receives it through a file in its state directory.
var signingKey = newKey()

func newKey() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic("aoaitest: no randomness for the signing key: " + err.Error())
	}
	return k
}

// Claims are the claims of a token minted by the stand-ins. They mirror the claims of
// an Entra ID access token that matter to Azure OpenAI.
type Claims struct {
	Audience  string `json:"aud"`   // the resource, e.g. [Audience]
	Issuer    string `json:"iss"`   // https://sts.windows.net/<tid>/
	IssuedAt  int64  `json:"iat"`   // Unix seconds
	NotBefore int64  `json:"nbf"`   // Unix seconds
	Expires   int64  `json:"exp"`   // Unix seconds
	ObjectID  string `json:"oid"`   // the principal: the identity's object id
	AppID     string `json:"appid"` // client id of the application that asked for it
	TenantID  string `json:"tid"`   // the tenant
	Subject   string `json:"sub"`   // same as ObjectID here
	IDType    string `json:"idtyp"` // "app" for a managed identity, "user" for a person
}

// ErrInvalidToken is returned (wrapped) by [VerifyToken] for any token the stand-ins
// would refuse.
var ErrInvalidToken = errors.New("aoaitest: invalid token")

// VerifyToken checks that token was minted by a stand-in of this process (an
// [Identity], an [Azd] or [Identity.Token]), is for [Audience], and is valid now. It
// returns the token's claims. The error wraps [ErrInvalidToken].
func VerifyToken(token string) (*Claims, error) {
	c, err := parseToken(token)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	now := time.Now().Unix()
	switch {
	case c.Audience != Audience:
		return nil, fmt.Errorf("%w: audience %q, want %q", ErrInvalidToken, c.Audience, Audience)
	case now >= c.Expires:
		return nil, fmt.Errorf("%w: expired at %s", ErrInvalidToken,
			time.Unix(c.Expires, 0).UTC().Format(time.RFC3339))
	case now < c.NotBefore:
		return nil, fmt.Errorf("%w: not valid before %s", ErrInvalidToken,
			time.Unix(c.NotBefore, 0).UTC().Format(time.RFC3339))
	}
	return c, nil
}

// jwtHeader is the fixed header of every minted token.
var jwtHeader = b64([]byte(`{"alg":"HS256","typ":"JWT"}`))

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// mint signs claims with key into a compact JWT.
func mint(key []byte, c *Claims) string {
	body, err := json.Marshal(c)
	if err != nil {
		panic("aoaitest: marshal claims: " + err.Error()) // cannot happen: plain fields
	}
	signed := jwtHeader + "." + b64(body)
	return signed + "." + b64(sign(key, signed))
}

func sign(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return m.Sum(nil)
}

// parseToken checks the signature and decodes the claims; it checks no times.
func parseToken(token string) (*Claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWT")
	}
	if parts[0] != jwtHeader {
		return nil, errors.New("unexpected header")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, errors.New("malformed signature")
	}
	if !hmac.Equal(sig, sign(signingKey, parts[0]+"."+parts[1])) {
		return nil, errors.New("signature not made by this issuer")
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("malformed claims")
	}
	var c Claims
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, errors.New("malformed claims")
	}
	return &c, nil
}

// newClaims fills the time claims for a token valid from now for lifetime.
func newClaims(aud, oid, appid, tid, idtyp string, lifetime time.Duration) *Claims {
	now := time.Now()
	return &Claims{
		Audience:  aud,
		Issuer:    "https://sts.windows.net/" + tid + "/",
		IssuedAt:  now.Unix(),
		NotBefore: now.Add(-time.Minute).Unix(),
		Expires:   now.Add(lifetime).Unix(),
		ObjectID:  oid,
		AppID:     appid,
		TenantID:  tid,
		Subject:   oid,
		IDType:    idtyp,
	}
}

// newID returns a random identifier in the GUID layout Entra ID uses.
func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("aoaitest: no randomness: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// DefaultTenantID is the tenant of every identity the stand-ins issue tokens for,
// unless a caller asks for another (azd's --tenant-id).
const DefaultTenantID = "72f988bf-0000-4000-8000-00000000a01d"
