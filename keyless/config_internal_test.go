package keyless

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseDotEnv(t *testing.T) {
	tests := []struct {
		name, in string
		want     map[string]string
		err      string
	}{
		{"azd's own format", "AZURE_ENV_NAME=\"dev\"\nAZURE_LOCATION=\"eastus2\"\n",
			map[string]string{"AZURE_ENV_NAME": "dev", "AZURE_LOCATION": "eastus2"}, ""},
		{"comments, blanks and export", "# azd\n\nexport A=\"1\"\n  B = \"2\"  # note\n",
			map[string]string{"A": "1", "B": "2"}, ""},
		{"escapes in double quotes", `A="say \"hi\"\n\\ \$x"`,
			map[string]string{"A": "say \"hi\"\n\\ $x"}, ""},
		{"single quotes are literal", `A='a\nb "c"'`,
			map[string]string{"A": `a\nb "c"`}, ""},
		{"bare values", "A=https://x.example/ # comment\nB=\nC=a#b",
			map[string]string{"A": "https://x.example/", "B": "", "C": "a#b"}, ""},
		{"later value wins", "A=\"1\"\nA=\"2\"", map[string]string{"A": "2"}, ""},
		{"no equals sign", "A\n", nil, "line 1: not KEY=value"},
		{"empty key", "=1\n", nil, "line 1: not KEY=value"},
		{"unterminated quote", "A=\"1\nB=\"2\"", nil, "line 1: A: unterminated quote"},
		{"text after quote", "A=\"1\" 2", nil, "line 1: A: text after the closing quote"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDotEnv([]byte(tt.in))
			errText := ""
			if err != nil {
				errText = err.Error()
				got = nil
			}
			if errText != tt.err {
				t.Errorf("error = %q, want %q", errText, tt.err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
		})
	}
}
