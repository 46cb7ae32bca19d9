// probe: the workloads of benchmarks/sandbox_overhead.py, run inside a container. Each mode
// does its work in one process (no fork per item, so the sandbox's syscall, file and network
// paths are what is measured) and prints the nanoseconds the work took.
//
//	probe syscalls N        N getppid(2) calls: the cheapest round trip into the kernel
//	probe files DIR N SIZE  N files in DIR: create, write SIZE bytes, fsync, close; then unlink
//	probe http N            N HTTP GETs, a new TCP connection each, to a server on 127.0.0.1
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fail("usage: probe syscalls N | files DIR N SIZE | http N")
	}
	var elapsed time.Duration
	switch os.Args[1] {
	case "syscalls":
		elapsed = syscalls(count(os.Args[2]))
	case "files":
		if len(os.Args) != 5 {
			fail("usage: probe files DIR N SIZE")
		}
		elapsed = files(os.Args[2], count(os.Args[3]), count(os.Args[4]))
	case "http":
		elapsed = httpRequests(count(os.Args[2]))
	default:
		fail("unknown mode " + os.Args[1])
	}
	fmt.Println(elapsed.Nanoseconds())
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "probe:", msg)
	os.Exit(2)
}

func count(arg string) int {
	n, err := strconv.Atoi(arg)
	if err != nil || n < 1 {
		fail("not a positive count: " + arg)
	}
	return n
}

func syscalls(n int) time.Duration {
	start := time.Now()
	for i := 0; i < n; i++ {
		syscall.Getppid()
	}
	return time.Since(start)
}

func files(dir string, n, size int) time.Duration {
	data := make([]byte, size)
	work, err := os.MkdirTemp(dir, "probe-")
	if err != nil {
		fail(err.Error())
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		f, err := os.Create(filepath.Join(work, "f"+strconv.Itoa(i)))
		if err != nil {
			fail(err.Error())
		}
		if _, err := f.Write(data); err != nil {
			fail(err.Error())
		}
		if err := f.Sync(); err != nil {
			fail(err.Error())
		}
		if err := f.Close(); err != nil {
			fail(err.Error())
		}
	}
	for i := 0; i < n; i++ {
		if err := os.Remove(filepath.Join(work, "f"+strconv.Itoa(i))); err != nil {
			fail(err.Error())
		}
	}
	elapsed := time.Since(start)
	if err := os.Remove(work); err != nil {
		fail(err.Error())
	}
	return elapsed
}

func httpRequests(n int) time.Duration {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err.Error())
	}
	body := []byte("ok\n")
	go func() {
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write(body)
		}))
	}()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	url := "http://" + ln.Addr().String() + "/"
	start := time.Now()
	for i := 0; i < n; i++ {
		resp, err := client.Get(url)
		if err != nil {
			fail(err.Error())
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			fail(err.Error())
		}
		resp.Body.Close()
	}
	return time.Since(start)
}
