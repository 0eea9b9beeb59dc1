// A net/http server answering every request with a 1 KiB page, on 127.0.0.1:PORT (argv[1]),
// for bench/run.py's web rows (the same page lighttpd serves).
package main

import (
	"net/http"
	"os"
	"strings"
)

func main() {
	body := []byte("<html>" + strings.Repeat("x", 1011) + "</html>\n")
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write(body)
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Args[1], nil); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
}
