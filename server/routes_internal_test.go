package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/stent-dev/stent/api"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestAdminRoutesHaveClientMethods keeps the admin router and api.Client
// in step: it calls every method of api.Client (but the raw Do, Get and
// Download) against the server's route table and fails when an admin
// route has no method that reaches it, when a method reaches no route,
// or when an id does not arrive whole in its path wildcard (escaping).
func TestAdminRoutesHaveClientMethods(t *testing.T) {
	const arg = "x/y z?%" // every string argument and string field
	wildcard := regexp.MustCompile(`\{(\w+)\}`)
	var hit string
	var values map[string]string
	mux := http.NewServeMux()
	var admin []string
	for _, rt := range (&Server{}).apiRoutes() {
		mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) {
			hit, values = r.Pattern, map[string]string{}
			for _, m := range wildcard.FindAllStringSubmatch(r.Pattern, -1) {
				values[m[1]] = r.PathValue(m[1])
			}
			w.Write([]byte("null")) // decodes into every answer type
		})
		if _, path, _ := strings.Cut(rt.pattern, " "); strings.HasPrefix(path, api.PathAdmin) {
			admin = append(admin, rt.pattern)
		}
	}
	if len(admin) < 20 {
		t.Fatalf("found %d admin routes in apiRoutes, want the whole admin API", len(admin))
	}
	c := &api.Client{BaseURL: "http://stent.test", HTTP: &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, r)
		return rec.Result(), nil
	})}}

	raw := map[string]bool{"Do": true, "Get": true, "Download": true}
	calledBy := map[string][]string{}
	cv := reflect.ValueOf(c)
	for i := range cv.NumMethod() {
		m := cv.Type().Method(i)
		if raw[m.Name] {
			continue
		}
		ft := m.Type // the receiver is its first argument
		args := make([]reflect.Value, ft.NumIn()-1)
		for j := range args {
			args[j] = testArg(ft.In(j+1), arg)
		}
		hit = ""
		cv.Method(i).Call(args)
		if hit == "" {
			t.Errorf("api.Client.%s reaches no route the server serves", m.Name)
			continue
		}
		for name, got := range values {
			if got != arg && name != "sha" {
				t.Errorf("api.Client.%s: %s wildcard {%s} = %q, want %q (escape the id as one path segment)", m.Name, hit, name, got, arg)
			}
		}
		calledBy[hit] = append(calledBy[hit], m.Name)
	}
	for _, p := range admin {
		if len(calledBy[p]) == 0 {
			t.Errorf("the server serves %s and api.Client has no method for it: add one to api/admin.go", p)
		}
	}
	t.Logf("%d admin routes, client methods: %v", len(admin), calledBy)
}

// testArg is a value of type typ for calling a client method: s for
// strings and string fields (a window's name is its path), a context, a
// function returning zero values, else the zero value.
func testArg(typ reflect.Type, s string) reflect.Value {
	switch {
	case typ == reflect.TypeFor[context.Context]():
		return reflect.ValueOf(context.Background())
	case typ.Kind() == reflect.String:
		return reflect.ValueOf(s).Convert(typ)
	case typ.Kind() == reflect.Bool:
		return reflect.ValueOf(true)
	case typ.Kind() == reflect.Func:
		return reflect.MakeFunc(typ, func([]reflect.Value) []reflect.Value {
			out := make([]reflect.Value, typ.NumOut())
			for i := range out {
				out[i] = reflect.Zero(typ.Out(i))
			}
			return out
		})
	case typ.Kind() == reflect.Struct:
		v := reflect.New(typ).Elem()
		for i := range typ.NumField() {
			if f := v.Field(i); f.CanSet() && f.Kind() == reflect.String {
				f.SetString(s)
			}
		}
		return v
	}
	return reflect.Zero(typ)
}
