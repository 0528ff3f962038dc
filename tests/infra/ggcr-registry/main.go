// Command ggcr-registry serves go-containerregistry's in-memory OCI registry with the OCI 1.1
// referrers API switched on. provgate's tests use it as the "registry with referrers" because the
// registries that ship the API as a server (zot, olareg) are not reachable through the module proxy
// here; distribution v3 is the "registry without referrers".
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr := flag.String("address", "127.0.0.1:0", "listen address")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// Tests read the bound port from this line.
	log.Printf("listening on %s", ln.Addr())
	h := registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(os.Stderr, "", log.LstdFlags)))
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(ln))
}
