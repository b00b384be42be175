// Package aoaitest provides local stand-ins for the services a keyless Azure OpenAI
// client talks to, for tests and demos, in the manner of net/http/httptest:
//
//   - [AzureOpenAI], a TLS server answering chat completions as Azure OpenAI does,
//     streaming or not, with scripted replies and injectable faults;
//   - [Identity], the managed identity endpoint App Service and Container Apps give a
//     process through IDENTITY_ENDPOINT and IDENTITY_HEADER;
//   - [Azd], an `azd` command on PATH answering `azd auth token` for a signed-in
//     developer;
//   - [Guard], which keeps a test on loopback and away from the developer's real
//     Azure sign-in.
//
// All stand-ins listen on 127.0.0.1 and speak the real wire protocols, so tests run
// the real azidentity credentials and the real openai-go client end to end. Every
// token is a JWT signed by a key private to the process; [AzureOpenAI] accepts only
// those, for the Cognitive Services audience ([Audience]), unexpired.
//
// # A test
//
// Call [Guard] first, start the stand-ins, point the code under test at them:
//
//	func TestChat(t *testing.T) {
//		hc := aoaitest.Guard(t)
//		id := aoaitest.NewIdentity()
//		defer id.Close()
//		id.Setenv(t)
//		srv := aoaitest.NewAzureOpenAI()
//		defer srv.Close()
//		cred, _ := azidentity.NewManagedIdentityCredential(
//			&azidentity.ManagedIdentityCredentialOptions{
//				ID:            azidentity.ClientID(id.ClientID),
//				ClientOptions: azcore.ClientOptions{Transport: hc},
//			})
//		client := openai.NewClient(
//			azure.WithEndpoint(srv.URL, "2024-10-21"),
//			azure.WithTokenCredential(cred),
//			option.WithHTTPClient(srv.Client()))
//		// ... call client.Chat.Completions, then inspect srv.Requests().
//	}
//
// # Faults
//
// Set [AzureOpenAI.Script] to answer each request with a [Reply]: its content and
// faults (an error status with Retry-After, delays, a cut connection, a malformed
// chunk, a filtered prompt or answer). [AzureOpenAI.Deny] refuses a principal with
// 403, [Identity.FailNext] fails token requests, [Azd.SignOut] signs the developer
// out.
//
// # Demos
//
// [AzureOpenAI] and [Identity] need no testing.T: a demo program can start them too.
// Handing [Identity.Env] to a credential is not enough: azidentity's managed identity
// credential reads IDENTITY_ENDPOINT and IDENTITY_HEADER from the process environment
// only, when it is built and at every token request. So the program sets those two
// variables of Env in its own environment with os.Setenv before it builds the
// credential, and keeps them set, as [Identity.Setenv] does for a test (the securechat
// chat app's demo does it with Demo.SetProcessEnv). [Azd] and [Guard] are for tests
// only.
package aoaitest
