package aoaitest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/google/go-cmp/cmp"

	"github.com/aoaiblocks/securechat/aoaitest"
)

func TestAzureDeveloperCLICredentialGetsTokenFromAzd(t *testing.T) {
	aoaitest.Guard(t)
	azd := aoaitest.NewAzd(t)
	cred, err := azidentity.NewAzureDeveloperCLICredential(nil)
	if err != nil {
		t.Fatal(err)
	}

	tok, err := getToken(cred, aoaitest.Scope)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := aoaitest.VerifyToken(tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	if claims.ObjectID != azd.PrincipalID() || claims.IDType != "user" {
		t.Errorf("oid, idtyp = %s, %s; want %s, user", claims.ObjectID, claims.IDType,
			azd.PrincipalID())
	}
	if d := time.Until(tok.ExpiresOn); d < 59*time.Minute || d > time.Hour {
		t.Errorf("token expires in %v, want about an hour", d)
	}
	want := [][]string{{"auth", "token", "-o", "json", "--no-prompt", "--scope", aoaitest.Scope}}
	if diff := cmp.Diff(want, azd.Args()); diff != "" {
		t.Errorf("azd arguments (-want +got):\n%s", diff)
	}
}

func TestAzureDeveloperCLICredentialPassesTenant(t *testing.T) {
	aoaitest.Guard(t)
	azd := aoaitest.NewAzd(t)
	const tenant = "11111111-2222-4333-8444-555555555555"
	cred, err := azidentity.NewAzureDeveloperCLICredential(
		&azidentity.AzureDeveloperCLICredentialOptions{TenantID: tenant})
	if err != nil {
		t.Fatal(err)
	}

	tok, err := getToken(cred, aoaitest.Scope)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := aoaitest.VerifyToken(tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	if claims.TenantID != tenant {
		t.Errorf("tid = %s, want %s", claims.TenantID, tenant)
	}
	want := [][]string{{"auth", "token", "-o", "json", "--no-prompt", "--scope", aoaitest.Scope,
		"--tenant-id", tenant}}
	if diff := cmp.Diff(want, azd.Args()); diff != "" {
		t.Errorf("azd arguments (-want +got):\n%s", diff)
	}
}

func TestAzureDeveloperCLICredentialFailsWhenSignedOut(t *testing.T) {
	aoaitest.Guard(t)
	azd := aoaitest.NewAzd(t)
	azd.SignOut()
	cred, err := azidentity.NewAzureDeveloperCLICredential(nil)
	if err != nil {
		t.Fatal(err)
	}

	_, err = getToken(cred, aoaitest.Scope)
	if err == nil || !strings.Contains(err.Error(), "azd auth login") {
		t.Fatalf("GetToken signed out = %v, want an error naming azd auth login", err)
	}

	azd.SignIn()
	if _, err := getToken(cred, aoaitest.Scope); err != nil {
		t.Fatalf("GetToken signed in again: %v", err)
	}
	if azd.Calls() != 2 {
		t.Errorf("Calls() = %d, want 2", azd.Calls())
	}
}
