package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/blvm/blvm-sandbox/ipc/pb"
	"github.com/blvm/blvm-sandbox/manifest"
)

// Client talks to a daemon's admin API. The zero value uses DefaultSocket.
type Client struct {
	Socket string
}

// APIError is an answer from the daemon that is not a success. It matches
// ErrUnknownModule (404), ErrInvalid (400) and ErrConflict (409) with
// errors.Is.
type APIError struct {
	StatusCode int
	Message    string
	kind       error
}

func (e *APIError) Error() string { return e.Message }

func (e *APIError) Is(target error) bool { return e.kind != nil && target == e.kind }

func (c *Client) socket() string {
	if c.Socket == "" {
		return DefaultSocket
	}
	return c.Socket
}

// do sends one request and returns the response if its status is 2xx.
// The caller closes the body.
func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	sock := c.socket()
	// One transport per request: a CLI makes one or two, and nothing idles.
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", sock)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
			}
			return conn, nil
		},
		DisableKeepAlives:  true,
		DisableCompression: true,
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://blvm-sandbox"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // "Get http://blvm-sandbox/...: " says nothing useful
		}
		return nil, fmt.Errorf("admin %s: %w", sock, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, readError(resp)
}

func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &APIError{StatusCode: resp.StatusCode}
	var er errorResponse
	if json.Unmarshal(b, &er) == nil && er.Error != "" {
		e.Message = er.Error
		switch resp.StatusCode {
		case http.StatusNotFound:
			e.kind = ErrUnknownModule
		case http.StatusBadRequest:
			e.kind = ErrInvalid
		case http.StatusConflict:
			e.kind = ErrConflict
		}
		return e
	}
	// Not our API's answer (an older daemon, a wrong route).
	e.Message = fmt.Sprintf("admin API: %s %s: %s", resp.Request.Method, resp.Request.URL.Path, resp.Status)
	if msg := strings.TrimSpace(string(b)); msg != "" {
		e.Message += ": " + msg
	}
	return e
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("admin %s: %s: %w", c.socket(), path, err)
	}
	return nil
}

func modulePath(name, rest string) (string, error) {
	if !manifest.ValidModuleName(name) {
		return "", fmt.Errorf("%w module name %q", ErrInvalid, name)
	}
	return "/v1/modules/" + url.PathEscape(name) + "/" + rest, nil
}

// Modules lists the daemon's modules.
func (c *Client) Modules(ctx context.Context) ([]ModuleInfo, error) {
	var mods []ModuleInfo
	if err := c.getJSON(ctx, "/v1/modules", &mods); err != nil {
		return nil, err
	}
	return mods, nil
}

// action posts VERB for name and returns the module's row after it, or nil
// if the daemon no longer lists the module.
func (c *Client) action(ctx context.Context, verb, name string) (*ModuleInfo, error) {
	path, err := modulePath(name, verb)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, http.MethodPost, path, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return nil, nil
	}
	var mi ModuleInfo
	if err := json.NewDecoder(resp.Body).Decode(&mi); err != nil {
		return nil, fmt.Errorf("admin %s: %s: %w", c.socket(), path, err)
	}
	return &mi, nil
}

// Load verifies and starts a module.
func (c *Client) Load(ctx context.Context, name string) (*ModuleInfo, error) {
	return c.action(ctx, "load", name)
}

// Unload stops a module and the modules that require it.
func (c *Client) Unload(ctx context.Context, name string) (*ModuleInfo, error) {
	return c.action(ctx, "unload", name)
}

// Start starts a stopped module.
func (c *Client) Start(ctx context.Context, name string) (*ModuleInfo, error) {
	return c.action(ctx, "start", name)
}

// Stop stops a module; it stays listed as stopped.
func (c *Client) Stop(ctx context.Context, name string) (*ModuleInfo, error) {
	return c.action(ctx, "stop", name)
}

// Restart stops and starts a module.
func (c *Client) Restart(ctx context.Context, name string) (*ModuleInfo, error) {
	return c.action(ctx, "restart", name)
}

// Logs writes the module's log to w. With follow it keeps writing what is
// appended until ctx ends, and then returns nil.
func (c *Client) Logs(ctx context.Context, name string, follow bool, w io.Writer) error {
	return c.LogsWith(ctx, name, LogOptions{Follow: follow}, w)
}

// CliSpecs is getmoduleclispecs: every registered module CLI by module name.
func (c *Client) CliSpecs(ctx context.Context) (map[string]*pb.RegisterCliSpec, error) {
	var raw map[string]json.RawMessage
	if err := c.getJSON(ctx, "/v1/cli", &raw); err != nil {
		return nil, err
	}
	out := make(map[string]*pb.RegisterCliSpec, len(raw))
	for mod, b := range raw {
		spec := new(pb.RegisterCliSpec)
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, spec); err != nil {
			return nil, fmt.Errorf("admin %s: cli spec of %s: %w", c.socket(), mod, err)
		}
		out[mod] = spec
	}
	return out, nil
}

// RunCli is runmodulecli: it runs one of the module's CLI commands and
// returns the module's output and exit code.
func (c *Client) RunCli(ctx context.Context, module, command string, args []string) (*pb.CliResult, error) {
	path, err := modulePath(module, "cli")
	if err != nil {
		return nil, err
	}
	if args == nil {
		args = []string{}
	}
	resp, err := c.do(ctx, http.MethodPost, path, cliRequest{Command: command, Args: args})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var res cliResponse
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return nil, fmt.Errorf("admin %s: cli %s %s: %w", c.socket(), module, command, err)
	}
	return &pb.CliResult{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode}, nil
}

// Events calls fn for each event the daemon publishes until ctx ends (it
// then returns nil), the daemon goes away, or fn returns an error.
func (c *Client) Events(ctx context.Context, fn func(Event) error) error {
	resp, err := c.do(ctx, http.MethodGet, "/v1/events", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("admin %s: events: %w", c.socket(), err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("admin %s: events: %w", c.socket(), err)
	}
	return fmt.Errorf("admin %s: events: the daemon closed the stream", c.socket())
}

// Metrics returns the Prometheus text exposition from /metrics.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, "/metrics", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}
