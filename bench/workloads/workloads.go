// Package workloads embeds the six YCSB core workload files (a-f), with
// upstream's properties, so the runner works from any directory.
package workloads

import (
	"bytes"
	"embed"
	"fmt"

	"github.com/heapkv/heapkv/bench/ycsb"
)

//go:embed workloada workloadb workloadc workloadd workloade workloadf
var files embed.FS

// Get returns the properties of workload name ("a".."f").
func Get(name string) (ycsb.Properties, error) {
	b, err := files.ReadFile("workload" + name)
	if err != nil {
		return nil, fmt.Errorf("workloads: no core workload %q (a-f)", name)
	}
	return ycsb.ParseProperties(bytes.NewReader(b))
}
