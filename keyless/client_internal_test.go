package keyless

import (
	"reflect"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// TestClientWithoutEnvironmentHasEveryService compares the hand-built client with
// openai.NewClient's: every service openai.NewClient configures, at any depth, must be
// configured here too, so that an upgrade of openai-go that adds one fails here.
func TestClientWithoutEnvironmentHasEveryService(t *testing.T) {
	opt := option.WithBaseURL("https://127.0.0.1/openai/v1/")
	want := openai.NewClient(opt)
	got := clientWithoutEnvironment(opt)
	optionsType := reflect.TypeOf([]option.RequestOption(nil))

	var walk func(path string, w, g reflect.Value)
	walk = func(path string, w, g reflect.Value) {
		switch {
		case w.Type() == optionsType:
			if w.Len() > 0 && g.Len() == 0 {
				t.Errorf("%s has no options: clientWithoutEnvironment misses a service", path)
			}
		case w.Kind() == reflect.Struct:
			for i := range w.NumField() {
				f := w.Type().Field(i)
				if f.IsExported() {
					walk(path+"."+f.Name, w.Field(i), g.Field(i))
				}
			}
		}
	}
	walk("Client", reflect.ValueOf(want), reflect.ValueOf(got))
}
