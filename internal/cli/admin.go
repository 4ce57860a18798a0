package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stent-dev/stent/api"
)

// serverFlags are how the admin commands (fleet, publish) reach a server.
type serverFlags struct {
	server, token, tokenFile, fingerprint, caFile string
}

func (f *serverFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&f.server, "server", os.Getenv("STENT_SERVER"), "server URL, https://host:8443 (env STENT_SERVER)")
	fs.StringVar(&f.token, "token", "", "admin token (env STENT_TOKEN)")
	fs.StringVar(&f.tokenFile, "token-file", os.Getenv("STENT_TOKEN_FILE"), "file holding the admin token (env STENT_TOKEN_FILE)")
	fs.StringVar(&f.fingerprint, "fingerprint", os.Getenv("STENT_SERVER_FINGERPRINT"), "pin the server certificate by fingerprint, sha256:... (env STENT_SERVER_FINGERPRINT)")
	fs.StringVar(&f.caFile, "ca-file", os.Getenv("STENT_CA_FILE"), "trust the server certificate through this CA file (env STENT_CA_FILE)")
}

func (f *serverFlags) client() (*api.Client, error) {
	if f.server == "" {
		return nil, errors.New("no server: pass --server https://HOST:8443 or set STENT_SERVER")
	}
	tok := f.token
	if tok == "" {
		tok = os.Getenv("STENT_TOKEN")
	}
	if tok == "" && f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		return nil, errors.New("no admin token: pass --token or --token-file, or set STENT_TOKEN (the server wrote its first one to <data-dir>/admin.token)")
	}
	hc, err := api.NewHTTPClient(api.TLSOptions{Fingerprint: f.fingerprint, CAFile: f.caFile})
	if err != nil {
		return nil, err
	}
	return &api.Client{BaseURL: f.server, Token: tok, HTTP: hc, Agent: "stent-cli"}, nil
}

// admin runs one call with the flags' client; the errors name what to do
// about the usual causes.
func admin[T any](sf *serverFlags, call func(*api.Client) (T, error)) (T, error) {
	c, err := sf.client()
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := call(c)
	return v, adminError(sf, err)
}

// adminDo is admin for calls that answer nothing.
func adminDo(sf *serverFlags, call func(*api.Client) error) error {
	_, err := admin(sf, func(c *api.Client) (struct{}, error) { return struct{}{}, call(c) })
	return err
}

// adminError names what to do about the usual causes of a failed call.
func adminError(sf *serverFlags, err error) error {
	var se *api.StatusError
	switch {
	case errors.As(err, &se) && se.Status == http.StatusUnauthorized:
		return fmt.Errorf("%s %s: %w (check --token)", se.Method, se.Path, err)
	case errors.As(err, &se) && se.Status == http.StatusForbidden:
		return withCode(4, fmt.Errorf("%s %s: %w", se.Method, se.Path, err))
	case err != nil && strings.Contains(err.Error(), "certificate"):
		return fmt.Errorf("%s: %w (pin the server with --fingerprint, printed by stent-server fingerprint)", sf.server, err)
	}
	return err
}

// listOrShow answers "COMMAND [ID]" for an admin collection: without an
// ID it lists the collection (getAll) with list; with one it shows that
// item (getOne) as a one-line list followed by details. --json prints the
// server's answer as it is.
func listOrShow[T any](cmd *cobra.Command, env *Env, sf *serverFlags, args []string, asJSON bool,
	getAll func(*api.Client, context.Context) ([]T, error), getOne func(c *api.Client, ctx context.Context, id string) (*T, error),
	list func(io.Writer, []T), details func(T) error) error {
	ctx := cmd.Context()
	if len(args) == 0 {
		all, err := admin(sf, func(c *api.Client) ([]T, error) { return getAll(c, ctx) })
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(env.Stdout, all)
		}
		list(env.Stdout, all)
		return nil
	}
	one, err := admin(sf, func(c *api.Client) (*T, error) { return getOne(c, ctx, args[0]) })
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(env.Stdout, one)
	}
	list(env.Stdout, []T{*one})
	return details(*one)
}

// jsonFlag adds --json, which every reporting admin command takes.
func jsonFlag(c *cobra.Command, asJSON *bool) {
	c.Flags().BoolVar(asJSON, "json", false, "print as JSON")
}

// reasonFlag adds --reason, the why that goes into the audit log.
func reasonFlag(c *cobra.Command, reason *string) {
	c.Flags().StringVar(reason, "reason", "", "why, for the audit log")
}
