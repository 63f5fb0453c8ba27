package client

import (
	"net/http/httptest"

	"github.com/blvm/blvm-sandbox/registry/server"
)

type httptestServer = httptest.Server

func startServer(dir string) *httptest.Server { return httptest.NewServer(server.Handler(dir, nil)) }
