// Command httpfloor measures the floor of Fossil's lone shape that HTTP
// itself sets on this machine: one client POSTing a 500-byte body and
// waiting for a short JSON answer, one request at a time over a kept-alive
// connection, to a net/http server that does nothing else — the same
// client and server stacks as `fossil bench` and `fossil server`, without
// Fossil. The server runs as a child process (as Fossil's does), so that
// every request pays the wake-ups of two processes, as in make bench.
//
//	go run ./bench/httpfloor [-n 20000]
//
// It prints requests/s and the mean, median and 99th percentile round trip.
// Compare with Fossil's lone statement under pgbench at the same moment
// (RAW_SHAPES=lonesql:1 bench/pgbench.sh): a lone append cannot take less
// than the sum of the two.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"

	"github.com/fossil-events/fossil/bench/internal/rtt"
)

func main() {
	n := flag.Int("n", 20000, "requests")
	serve := flag.Bool("serve", false, "run the server (the child process)")
	flag.Parse()
	if *serve {
		runServer()
		return
	}
	cmd := exec.Command(os.Args[0], "-serve")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	addr, err := bufio.NewReader(out).ReadString('\n')
	var r rtt.Result
	if err == nil {
		r, err = measure("http://"+addr[:len(addr)-1]+"/collect", *n)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("httpfloor: round trips:", r)
}

// measure POSTs n requests to url one after the other.
func measure(url string, n int) (rtt.Result, error) {
	body := bytes.Repeat([]byte("a"), 500)
	return rtt.Measure(n, func(int) error {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			return fmt.Errorf("status %d", res.StatusCode)
		}
		return nil
	})
}

// answer is the server's handler: read the body, answer as /collect does.
func answer(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte(`{"events":[{"id":"x","source":"/s","fossileventnumber":1,"fossilsequenceinstream":1}]}`))
}

func runServer() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ln.Addr())
	log.Fatal(http.Serve(ln, http.HandlerFunc(answer)))
}
